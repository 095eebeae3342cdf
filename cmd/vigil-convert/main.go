// Command vigil-convert writes audit log files in the envelope a managed
// Kubernetes service delivers them in: EKS (CloudWatch Logs subscription
// messages, gzip members back to back as Firehose leaves them in S3), GKE
// (Cloud Audit Logs LogEntry JSON lines, as a Cloud Storage export) or AKS
// (diagnostic-settings records, one per line, as a storage account holds
// them). vigil replay reads all three; tests and trials use the output to
// check a detection pipeline without a cloud account.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/logfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil-convert --to eks|gke|aks [flags] [FILE|DIR|-]...")
		fs.PrintDefaults()
	}
	to := fs.String("to", "", "envelope to write: eks, gke or aks (required)")
	out := fs.String("o", "", "write to FILE instead of standard output")
	var opts envelope.EncodeOptions
	fs.StringVar(&opts.Cluster, "cluster", "cluster", "cluster name the envelopes carry")
	fs.StringVar(&opts.Project, "project", "project", "GKE project id")
	fs.StringVar(&opts.Location, "location", "europe-west1", "GKE cluster location")
	fs.StringVar(&opts.Account, "account", "123456789012", "EKS: AWS account id (the message owner)")
	fs.StringVar(&opts.Subscription, "subscription", "00000000-0000-0000-0000-000000000000", "AKS: Azure subscription id")
	fs.StringVar(&opts.ResourceGroup, "resource-group", "vigil", "AKS: resource group")
	fs.BoolVar(&opts.Cut, "cut", false, "cut events over the provider's size limit as the provider does (EKS 256 KiB, AKS 16 KiB)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	provider, err := envelope.ParseProvider(*to)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-convert: --to: %v\n", err)
		return 2
	}
	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	if err := convert(inputs, stdin, stdout, *out, provider, opts, stderr); err != nil {
		fmt.Fprintf(stderr, "vigil-convert: %v\n", err)
		return 1
	}
	return 0
}

func convert(inputs []string, stdin io.Reader, stdout io.Writer, out string, provider envelope.Format, opts envelope.EncodeOptions, stderr io.Writer) error {
	bad := 0
	r, err := logfile.Open(inputs, stdin, logfile.Options{OnError: func(origin string, err error) error {
		bad++
		fmt.Fprintf(stderr, "vigil-convert: %s: %v\n", origin, err)
		return nil
	}})
	if err != nil {
		return err
	}
	defer r.Close(context.Background())
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	enc, err := envelope.NewEncoder(w, provider, opts)
	if err != nil {
		return err
	}
	events := 0
	for {
		b, err := r.Read(context.Background())
		for _, rec := range b.Records {
			if werr := enc.Write(rec.Data); werr != nil {
				return fmt.Errorf("%s: %w", rec.Origin, werr)
			}
			events++
		}
		if b.Ack != nil {
			b.Ack(context.Background(), nil)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	fmt.Fprintf(stderr, "vigil-convert: %d events to %s (%d cut to the provider's limit, %d never written by %s, %d unreadable lines)\n",
		events, provider, enc.Cut, enc.Skipped, provider, bad)
	return nil
}
