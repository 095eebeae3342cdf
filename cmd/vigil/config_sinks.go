package main

import (
	"context"
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-k8s/vigil/sinks"
)

// sinkConfig decodes the config file's sinks: and routes: sections.
// Errors are usage errors with field paths (sinks[1].url: required).
func (c *Config) sinkConfig() (sinks.Config, error) {
	sc, err := sinks.DecodeConfig(&c.Sinks, &c.Routes)
	if err != nil {
		return sinks.Config{}, usageError{fmt.Errorf("config: %w", err)}
	}
	return sc, nil
}

// sinkSetup is how a command wants its sinks built.
type sinkSetup struct {
	// output is replay's -o: a file sink named "output" that receives
	// every alert ("-" is standard output).
	output string
	// metrics receives the per-sink metrics (nil: a private set).
	metrics *metrics.Set
	// js selects the durable mode (vigil serve): alerts go to the
	// VIGIL_ALERTS stream and each sink reads it with its own consumer.
	js      jetstream.JetStream
	durable sinks.DurableOptions
	// nc is the connection nats sinks without a url publish on.
	nc *nats.Conn
	// responder, when set, consumes every alert beside the sinks
	// (vigil serve's responses; see serveResponder).
	responder sinks.Sink
}

// buildSinks builds the dispatcher of cfg's sinks. With no sink configured
// and no output, alerts go to standard output as JSON lines. The caller
// must Close the dispatcher (Close flushes in replay mode).
func (a *app) buildSinks(ctx context.Context, cfg *Config, s sinkSetup) (*sinks.Dispatcher, error) {
	sc, err := cfg.sinkConfig()
	if err != nil {
		return nil, err
	}
	switch {
	case s.output != "":
		sc.Sinks = append(sc.Sinks, sinks.FileSink("output", s.output))
	case len(sc.Sinks) == 0:
		sc.Sinks = append(sc.Sinks, sinks.FileSink("stdout", "-"))
	}
	opts := []sinks.Option{sinks.WithLogger(a.logger), sinks.WithStdout(a.stdout)}
	if s.metrics != nil {
		opts = append(opts, sinks.WithMetrics(s.metrics))
	}
	if s.nc != nil {
		opts = append(opts, sinks.WithNATS(s.nc))
	}
	if s.js != nil {
		opts = append(opts, sinks.WithDurable(s.js, s.durable))
	}
	if s.responder != nil {
		opts = append(opts, sinks.WithConsumer(responsesConsumer, s.responder))
	}
	if err := sc.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("config: %w", err)}
	}
	d, err := sinks.Build(ctx, sc, opts...)
	if err != nil {
		if s.js == nil {
			// In memory mode every Build failure comes from the config
			// (a file that cannot be created, a TLS file that is missing).
			return nil, usageError{fmt.Errorf("build sinks: %w", err)}
		}
		return nil, fmt.Errorf("build sinks: %w", err)
	}
	return d, nil
}
