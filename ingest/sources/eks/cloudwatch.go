package eks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
)

// CloudWatchConfig configures the log group poller.
type CloudWatchConfig struct {
	sources.Common
	// Cluster (in Common) names the EKS cluster; LogGroup defaults to
	// /aws/eks/CLUSTER/cluster.
	LogGroup string
	// Region and Endpoint override the SDK's (an endpoint for tests or a
	// VPC endpoint); credentials come from the SDK's default chain.
	Region, Endpoint string
	// StateFile keeps the cursor across restarts (required).
	StateFile string
	// PollInterval is the pause after the log group is read to its end
	// (default 10s); Lookback how far before the newest event read each
	// poll reads again, for events CloudWatch ingests late (default 2m).
	PollInterval, Lookback time.Duration
	// Client replaces the SDK client built from the settings above.
	Client *cloudwatchlogs.Client
}

// CloudWatch polls an EKS cluster's log group with FilterLogEvents. It is
// a pipeline.Source.
type CloudWatch struct {
	cfg CloudWatchConfig
	h   *sources.Handler
}

var _ pipeline.Source = (*CloudWatch)(nil)

// NewCloudWatch checks the configuration.
func NewCloudWatch(cfg CloudWatchConfig) (*CloudWatch, error) {
	if cfg.LogGroup == "" && cfg.Cluster == "" {
		return nil, errors.New("eks cloudwatch source: cluster or log_group is required")
	}
	if cfg.LogGroup == "" {
		cfg.LogGroup = "/aws/eks/" + cfg.Cluster + "/cluster"
	}
	if cfg.Cluster == "" {
		cfg.Cluster = envelope.EKSCluster(cfg.LogGroup)
	}
	if cfg.StateFile == "" {
		return nil, errors.New("eks cloudwatch source: state_file is required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = 2 * time.Minute
	}
	if cfg.Name == "" {
		cfg.Name = "eks-cloudwatch"
	}
	return &CloudWatch{cfg: cfg, h: sources.NewHandler(envelope.EKS, cfg.Common)}, nil
}

// Name implements pipeline.Source.
func (c *CloudWatch) Name() string { return c.h.Name() }

// cursor is where the poller is: the start time of the next read, saved,
// and the events already stored from that time on, kept in memory only.
// After a restart the events since the start time are stored again; the
// queue drops them as duplicates of (auditID, stage).
type cursor struct {
	Start int64            `json:"startTime"`
	Seen  map[string]int64 `json:"-"` // event id -> timestamp
}

func (c *CloudWatch) load() (cursor, error) {
	cur := cursor{Seen: map[string]int64{}}
	data, err := os.ReadFile(c.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return cur, nil
	}
	if err != nil {
		return cur, fmt.Errorf("read cursor: %w", err)
	}
	if err := json.Unmarshal(data, &cur); err != nil {
		return cur, fmt.Errorf("cursor %s: %w", c.cfg.StateFile, err)
	}
	cur.Seen = map[string]int64{}
	return cur, nil
}

// save writes the cursor atomically.
func (c *CloudWatch) save(cur cursor) error {
	data, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.cfg.StateFile), 0o700); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	tmp := c.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	if err := os.Rename(tmp, c.cfg.StateFile); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	return nil
}

func (c *CloudWatch) client(ctx context.Context) (*cloudwatchlogs.Client, error) {
	if c.cfg.Client != nil {
		return c.cfg.Client, nil
	}
	var opts []func(*config.LoadOptions) error
	if c.cfg.Region != "" {
		opts = append(opts, config.WithRegion(c.cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return cloudwatchlogs.NewFromConfig(awsCfg, func(o *cloudwatchlogs.Options) {
		if c.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.Endpoint)
		}
	}), nil
}

// Run polls until ctx is done. Each page of events is stored before the
// cursor moves past it and is saved.
func (c *CloudWatch) Run(ctx context.Context, pub pipeline.Publisher) error {
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	cur, err := c.load()
	if err != nil {
		return err
	}
	c.h.Logger().Info("polling EKS audit logs", "log_group", c.cfg.LogGroup, "from", time.UnixMilli(cur.Start).UTC())
	for {
		if err := c.poll(ctx, cl, pub, &cur); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.h.Logger().Warn("poll CloudWatch Logs", "log_group", c.cfg.LogGroup, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.cfg.PollInterval):
		}
	}
}

// poll reads the log group from the cursor to its end.
func (c *CloudWatch) poll(ctx context.Context, cl *cloudwatchlogs.Client, pub pipeline.Publisher, cur *cursor) error {
	in := &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(c.cfg.LogGroup),
		LogStreamNamePrefix: aws.String("kube-apiserver-audit"), StartTime: aws.Int64(cur.Start)}
	for {
		out, err := cl.FilterLogEvents(ctx, in)
		if err != nil {
			return fmt.Errorf("FilterLogEvents: %w", err)
		}
		var b sources.Batch
		newest := cur.Start
		fresh := map[string]int64{}
		for _, e := range out.Events {
			id, ts := aws.ToString(e.EventId), aws.ToInt64(e.Timestamp)
			if _, seen := cur.Seen[id]; seen {
				continue
			}
			fresh[id] = ts
			newest = max(newest, ts)
			c.h.DecodeCloudWatch(&b, []byte(aws.ToString(e.Message)), id, ts, c.cfg.Cluster,
				"cloudwatch:"+c.cfg.LogGroup+"/"+aws.ToString(e.LogStreamName)+"/"+id)
		}
		if b.Len() > 0 || b.Skipped > 0 {
			if err := c.h.Deliver(ctx, pub, &b); err != nil {
				return err
			}
		}
		if len(fresh) > 0 {
			// Read again from Lookback before the newest event: events
			// CloudWatch ingests late land before it. The ids seen since
			// then are kept so that a poll does not store them again.
			for id, ts := range fresh {
				cur.Seen[id] = ts
			}
			next := max(cur.Start, newest-c.cfg.Lookback.Milliseconds())
			for id, ts := range cur.Seen {
				if ts < next {
					delete(cur.Seen, id)
				}
			}
			cur.Start = next
			if err := c.save(*cur); err != nil {
				return err
			}
		}
		if out.NextToken == nil {
			return nil
		}
		in.NextToken = out.NextToken
	}
}
