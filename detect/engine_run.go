package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vigil-k8s/vigil/ingest"
)

// Run processes the batches src yields, with the same alerts in the same
// order as Process called on each in turn, until src returns io.EOF (Run
// then returns nil; call Flush after it) or another error (returned
// wrapped: "read input: ..."). It is for reading a log as fast as the cores
// allow: each worker reads a batch, decodes and matches it whole, then
// applies whatever batches are next in input order (duplicates,
// suppression, windows, alerts), so no core waits for another's stage.
// Emit, OnReject, OnSalvage and done are called one at a time, in input
// order, from the workers' goroutines; done, when set, is called after
// each batch is acked, and an error from it stops the run. Run must not be
// called while Process, Advance or Flush runs.
func (e *Engine) Run(ctx context.Context, src ingest.Source, done func(ingest.Batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runner{e: e, src: src, done: done, cancel: cancel, ready: map[uint64]*runJob{},
		// Workers may run ahead of the batch being applied by this many:
		// it bounds the batches held in memory.
		ahead: uint64(2 * len(e.workers))}
	r.cond = sync.NewCond(&r.mu)
	// A worker waiting for room must see the end of the run.
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(func() { r.work(ctx, w) })
	}
	wg.Wait()
	if r.err != nil {
		return r.err
	}
	return ctx.Err()
}

// runner is the state of a Run shared by its workers.
type runner struct {
	e      *Engine
	src    ingest.Source
	done   func(ingest.Batch) error
	cancel context.CancelFunc
	// read serializes src.Read; apply the in-order part.
	read, apply sync.Mutex
	// mu guards the fields below; cond tells workers waiting to read
	// that the batch being applied moved.
	mu   sync.Mutex
	cond *sync.Cond
	// seq numbers the batches read; next is the next to apply; ready
	// holds the matched batches waiting for their turn.
	seq, next, ahead uint64
	ready            map[uint64]*runJob
	free             [][]result
	// end is set once src is exhausted or failed (at the seq of its
	// error); err is the first error of the run.
	end bool
	err error
}

// runJob is one batch of a Run; err, when set, ends the input there.
type runJob struct {
	b   ingest.Batch
	res []result
	err error
}

func (r *runner) work(ctx context.Context, w *worker) {
	for {
		j, seq, ok := r.readNext(ctx)
		if !ok {
			return
		}
		if j.err == nil {
			j.res = r.results(len(j.b.Records))
			w.run(j.b.Records, j.res)
		}
		r.mu.Lock()
		r.ready[seq] = j
		r.mu.Unlock()
		r.applyReady(ctx)
	}
}

// readNext reads the next batch, waiting while the workers are too far
// ahead of the batch being applied; false when the run is over.
func (r *runner) readNext(ctx context.Context) (*runJob, uint64, bool) {
	r.mu.Lock()
	for !r.end && r.err == nil && ctx.Err() == nil && r.seq-r.next >= r.ahead {
		r.cond.Wait()
	}
	over := r.end || r.err != nil || ctx.Err() != nil
	r.mu.Unlock()
	if over {
		return nil, 0, false
	}
	r.read.Lock()
	defer r.read.Unlock()
	r.mu.Lock()
	if r.end || r.err != nil {
		r.mu.Unlock()
		return nil, 0, false
	}
	r.mu.Unlock()
	b, err := r.src.Read(ctx)
	j := &runJob{b: b}
	if len(b.Records) == 0 {
		if err == nil {
			// An empty batch: nothing to do but ack it in its turn.
			j.b.Records = nil
		} else {
			j.err = err
		}
	}
	r.mu.Lock()
	seq := r.seq
	r.seq++
	if err != nil {
		r.end = true
		if len(b.Records) > 0 {
			// The batch that came with the error goes first.
			r.ready[r.seq] = &runJob{err: err}
			r.seq++
		}
	}
	r.mu.Unlock()
	return j, seq, true
}

// results returns the result slice for a batch of n records.
func (r *runner) results(n int) []result {
	r.mu.Lock()
	var res []result
	if k := len(r.free); k > 0 {
		res, r.free = r.free[k-1], r.free[:k-1]
	}
	r.mu.Unlock()
	if cap(res) < n {
		res = make([]result, n)
	}
	return resetResults(res[:n])
}

// applyReady applies the batches that are next in input order, if no other
// worker is doing so; a batch made ready meanwhile is then applied by the
// worker that made it ready or by this one.
func (r *runner) applyReady(ctx context.Context) {
	for r.apply.TryLock() {
		for {
			r.mu.Lock()
			j := r.ready[r.next]
			r.mu.Unlock()
			if j == nil {
				break
			}
			err := r.applyJob(ctx, j)
			r.mu.Lock()
			delete(r.ready, r.next)
			r.next++
			if j.res != nil {
				r.free = append(r.free, j.res)
			}
			if err != nil && r.err == nil {
				r.err = err
				r.cancel()
			}
			r.cond.Broadcast()
			r.mu.Unlock()
		}
		r.apply.Unlock()
		r.mu.Lock()
		again := r.ready[r.next] != nil
		r.mu.Unlock()
		if !again {
			return
		}
	}
}

// applyJob applies one batch in its turn, as Process does, and acks it.
func (r *runner) applyJob(ctx context.Context, j *runJob) error {
	if j.err != nil {
		if errors.Is(j.err, io.EOF) {
			return nil
		}
		return fmt.Errorf("read input: %w", j.err)
	}
	e := r.e
	err := ctx.Err()
	if err == nil {
		err = e.sendUnsent()
	}
	if err == nil && len(j.b.Records) > 0 {
		err = e.apply(j.b.Records, j.res, time.Now())
	}
	if j.b.Ack != nil {
		if aerr := j.b.Ack(ctx, err); aerr != nil && err == nil {
			err = fmt.Errorf("ack batch: %w", aerr)
		}
	}
	if err == nil && r.done != nil {
		err = r.done(j.b)
	}
	return err
}
