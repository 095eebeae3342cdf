package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vigil-k8s/vigil/ingest"
)

// owner decides which partitions this replica pulls: those whose
// rendezvous owner among the live members is this replica. The live
// members are those that answer the service's $SRV.PING; a member unseen
// in two discoveries in a row is gone. A replica joins (registers and
// pulls) when it starts reading, so one that only publishes takes nothing.
type owner struct {
	q     *Queue
	svc   micro.Service
	stopc chan struct{}
	start sync.Once
	once  sync.Once
	loop  sync.WaitGroup

	missed map[string]int // member -> discoveries it was missing from

	// mu guards live and assigned (the partitions this replica pulls or is
	// to pull), which Replay and the metrics read.
	mu       sync.Mutex
	live     []string
	assigned []bool
}

// newOwner finds the live members and the partitions this replica is to
// read, without joining yet: Replay at start re-reads those partitions.
func newOwner(ctx context.Context, q *Queue) (*owner, error) {
	o := &owner{q: q, stopc: make(chan struct{}), missed: map[string]int{},
		assigned: make([]bool, q.opts.Partitions)}
	q.opts.Metrics.NewGauge("vigil_queue_members", func() float64 { return float64(len(o.members())) })
	if err := o.round(ctx, false); err != nil {
		return nil, err
	}
	return o, nil
}

// join registers this replica, pulls its partitions and starts the loop
// that follows the members. It runs once, at the first read.
func (o *owner) join(ctx context.Context) error {
	var err error
	o.start.Do(func() {
		select {
		case <-o.stopc:
			err = fmt.Errorf("read: %w", ingest.ErrClosed)
			return
		default:
		}
		o.svc, err = micro.AddService(o.q.nc, micro.Config{
			Name:        serviceName,
			Version:     "1.0.0",
			Description: "vigil replicas reading " + EventStream,
			Metadata:    map[string]string{"member": o.q.opts.Member},
		})
		if err != nil {
			err = fmt.Errorf("register replica %s: %w", o.q.opts.Member, err)
			return
		}
		for _, n := range o.assignedList() {
			if cerr := o.q.claim(o.q.parts[n]); cerr != nil {
				// Not pulled: the loop claims it again at its next round.
				o.mu.Lock()
				o.assigned[n] = false
				o.mu.Unlock()
				err = errors.Join(err, cerr)
			}
		}
		o.loop.Go(o.run)
	})
	return err
}

func (o *owner) run() {
	t := time.NewTicker(o.q.opts.DiscoveryInterval)
	defer t.Stop()
	for {
		select {
		case <-o.stopc:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), o.q.opts.DiscoveryInterval)
			if err := o.round(ctx, true); err != nil {
				o.q.log.Warn("partition ownership", "err", err)
			}
			cancel()
		}
	}
}

// stop leaves the service, so that the others see this replica gone at
// their next discovery, and ends the loop.
func (o *owner) stop() {
	o.once.Do(func() {
		close(o.stopc)
		o.start.Do(func() {}) // no join after this
		if o.svc != nil {
			o.svc.Stop()
		}
		o.loop.Wait()
	})
}

// members is the live set of the last discovery, sorted.
func (o *owner) members() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live
}

// round discovers the live members and, with pull, claims and releases
// partitions to match the assignment.
func (o *owner) round(ctx context.Context, pull bool) error {
	seen, err := o.discover(ctx)
	if err != nil {
		return err
	}
	for m := range o.missed {
		o.missed[m]++
	}
	for _, m := range seen {
		o.missed[m] = 0
	}
	o.missed[o.q.opts.Member] = 0
	live := make([]string, 0, len(o.missed))
	for m, n := range o.missed {
		if n >= 2 {
			delete(o.missed, m)
			continue
		}
		live = append(live, m)
	}
	slices.Sort(live)
	o.mu.Lock()
	changed := !slices.Equal(o.live, live)
	o.live = live
	o.mu.Unlock()
	if changed {
		o.q.log.Info("queue members", "members", live, "member", o.q.opts.Member)
	}
	var errs []error
	for n, p := range o.q.parts {
		want := Owner(n, live) == o.q.opts.Member
		o.mu.Lock()
		had := o.assigned[n]
		o.mu.Unlock()
		switch {
		case !pull:
		case want && !had:
			if err := o.q.claim(p); err != nil {
				errs = append(errs, err)
				continue
			}
		case !want && had:
			o.q.release(p)
		}
		o.mu.Lock()
		o.assigned[n] = want
		o.mu.Unlock()
	}
	return errors.Join(errs...)
}

// discover asks every member for its name and collects the answers for a
// quarter of the discovery interval.
func (o *owner) discover(ctx context.Context) ([]string, error) {
	nc := o.q.nc
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("discover members: %w", err)
	}
	defer sub.Unsubscribe()
	subj, err := micro.ControlSubject(micro.PingVerb, serviceName, "")
	if err != nil {
		return nil, fmt.Errorf("discover members: %w", err)
	}
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, fmt.Errorf("discover members: %w", err)
	}
	deadline := time.Now().Add(o.q.opts.DiscoveryInterval / 4)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var out []string
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			return out, nil // no member or no more
		}
		if err != nil {
			return out, fmt.Errorf("discover members: %w", err)
		}
		var ping micro.Ping
		if json.Unmarshal(m.Data, &ping) == nil && ping.Metadata["member"] != "" {
			out = append(out, ping.Metadata["member"])
		}
	}
}

// Owner is the member that partition n belongs to among members: the one
// with the highest hash of (member, n). When a member leaves, only its
// partitions move; when one joins, it takes about its share from each.
func Owner(n int, members []string) string {
	var best string
	var top uint64
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(n)))
		if s := mix(h.Sum64()); best == "" || s > top {
			best, top = m, s
		}
	}
	return best
}

// mix is the finaliser of SplitMix64: FNV of short strings differs only
// in a few bits, which would skew the maximum.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// assignedList lists the partitions this replica reads or is to read.
func (o *owner) assignedList() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int
	for n, a := range o.assigned {
		if a {
			out = append(out, n)
		}
	}
	return out
}
