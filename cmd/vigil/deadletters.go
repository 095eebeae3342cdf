package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-k8s/vigil/ingest/jetstream"
)

// deadLetterLine is one dead-lettered item as deadletters prints it.
type deadLetterLine struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster,omitempty"`
	Reason  string    `json:"reason"`
	// Size is the item's size as received; Truncated says Data holds
	// only its beginning.
	Size      int    `json:"size"`
	Truncated bool   `json:"truncated,omitempty"`
	Data      string `json:"data"`
}

func (a *app) deadLettersCmd() *cobra.Command {
	var (
		dataDir string
		limit   int
	)
	c := &cobra.Command{
		Use:   "deadletters",
		Short: "Print the webhook items that were refused inside accepted requests",
		Long: `A malformed or oversized event inside an otherwise valid EventList is not
dropped: vigil serve stores it in the dead-letter stream of its data dir (kept
7 days) and counts it in vigil_webhook_deadlettered_events_total. deadletters
prints those items, oldest first, one JSON object a line: seq, time, cluster,
reason, size, truncated (only the first part of an item over the payload limit
is kept) and data, the item as it was received.

The store admits one process at a time: stop vigil serve first, or run this on
a copy of its data dir.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			dir := filepath.Join(dataDir, "queue")
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				return usagef("no queue store in %s: is it the --data-dir of vigil serve?", dataDir)
			}
			enc := json.NewEncoder(a.stdout)
			n := 0
			err := jetstream.ReadDeadLetters(c.Context(), dir, limit, func(d jetstream.StoredDeadLetter) error {
				n++
				return enc.Encode(deadLetterLine{Seq: d.Seq, Time: d.Time.UTC(), Cluster: d.Cluster, Reason: d.Reason,
					Size: d.Size, Truncated: d.Size > len(d.Data), Data: string(d.Data)})
			})
			if err != nil {
				return fmt.Errorf("read dead letters: %w", err)
			}
			fmt.Fprintf(a.stderr, "%d dead-lettered items in %s\n", n, dir)
			return nil
		},
	}
	c.Flags().StringVar(&dataDir, "data-dir", "./vigil-data", "data dir of vigil serve")
	c.Flags().IntVarP(&limit, "limit", "n", 0, "print at most this many items (0: all)")
	return c
}
