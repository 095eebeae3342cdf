package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/vigil-k8s/vigil/detect"
	"github.com/vigil-k8s/vigil/ingest/envelope"
	"github.com/vigil-k8s/vigil/ingest/pipeline"
	"github.com/vigil-k8s/vigil/ingest/sources"
	"github.com/vigil-k8s/vigil/ingest/sources/aks"
	"github.com/vigil-k8s/vigil/ingest/sources/eks"
	"github.com/vigil-k8s/vigil/ingest/sources/gke"
	"github.com/vigil-k8s/vigil/policies/auditpolicy"
)

// The sources: section is a list of live sources, each with a type
// (docs/sources.md).
type gkeSourceConfig struct {
	Name            string `yaml:"name"`
	Type            string `yaml:"type"`
	Cluster         string `yaml:"cluster"`
	Project         string `yaml:"project"`
	Subscription    string `yaml:"subscription"`
	CredentialsFile string `yaml:"credentials_file"`
	Endpoint        string `yaml:"endpoint"`
}

type aksSourceConfig struct {
	Name             string   `yaml:"name"`
	Type             string   `yaml:"type"`
	Cluster          string   `yaml:"cluster"`
	Brokers          []string `yaml:"brokers"`
	EventHub         string   `yaml:"event_hub"`
	ConsumerGroup    string   `yaml:"consumer_group"`
	ConnectionString string   `yaml:"connection_string"`
	CAFile           string   `yaml:"ca_file"`
}

type eksFirehoseSourceConfig struct {
	Name      string `yaml:"name"`
	Type      string `yaml:"type"`
	Cluster   string `yaml:"cluster"`
	Listen    string `yaml:"listen"`
	Path      string `yaml:"path"`
	AccessKey string `yaml:"access_key"`
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`
}

type eksCloudWatchSourceConfig struct {
	Name         string          `yaml:"name"`
	Type         string          `yaml:"type"`
	Cluster      string          `yaml:"cluster"`
	LogGroup     string          `yaml:"log_group"`
	Region       string          `yaml:"region"`
	Endpoint     string          `yaml:"endpoint"`
	PollInterval detect.Duration `yaml:"poll_interval"`
	Lookback     detect.Duration `yaml:"lookback"`
}

var sourceTypes = []string{"gke", "aks", "eks-firehose", "eks-cloudwatch"}

var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// buildSources decodes the sources: section into live sources. Their
// metrics go to set; an event a provider cut is logged with the rules that
// read its lost body. Cursors live under dataDir/sources.
func buildSources(cfg *Config, dataDir string, log *slog.Logger, set *metrics.Set, rs *detect.RuleSet) ([]pipeline.Source, error) {
	n := &cfg.Sources
	if n.Kind == 0 {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, usagef("config: sources: want a list of sources (line %d)", n.Line)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	readers := auditpolicy.NewBodyReaders(rs)
	var out []pipeline.Source
	var errs []error
	names := map[string]bool{}
	for i, item := range n.Content {
		path := fmt.Sprintf("sources[%d]", i)
		var head struct {
			Name string `yaml:"name"`
			Type string `yaml:"type"`
		}
		if err := item.Decode(&head); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if head.Name == "" {
			head.Name = head.Type
		}
		if !sourceName.MatchString(head.Name) || names[head.Name] {
			errs = append(errs, fmt.Errorf("%s: name %q must be unique, lower case letters, digits, - and _ (line %d)", path, head.Name, item.Line))
			continue
		}
		names[head.Name] = true
		common := func(cluster string) sources.Common {
			return sources.Common{Name: head.Name, Cluster: cmpOr(cluster, cfg.Cluster), Logger: log, Metrics: set,
				OnTruncated: func(it envelope.Item) {
					log.Warn("event cut by the provider: read from what was kept", "source", head.Name, "origin", it.Origin,
						"audit_id", it.AuditID, "lost_from", it.Lost, "rules_that_read_its_body", strings.Join(readers.Rules(it.Data), ","))
				}}
		}
		src, err := buildSource(item, path, head.Type, dataDir, common)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, src)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{fmt.Errorf("config: %w", err)}
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func buildSource(item *yaml.Node, path, typ, dataDir string, common func(string) sources.Common) (pipeline.Source, error) {
	wrap := func(err error) error { return fmt.Errorf("%s (line %d): %w", path, item.Line, err) }
	switch typ {
	case "gke":
		var c gkeSourceConfig
		if err := decodeNode(item, path, &c); err != nil {
			return nil, err
		}
		s, err := gke.New(gke.Config{Common: common(c.Cluster), Project: c.Project, Subscription: c.Subscription,
			CredentialsFile: c.CredentialsFile, Endpoint: c.Endpoint})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "aks":
		var c aksSourceConfig
		if err := decodeNode(item, path, &c); err != nil {
			return nil, err
		}
		var tlsCfg *tls.Config
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, wrap(fmt.Errorf("ca_file: %w", err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, wrap(fmt.Errorf("ca_file %s holds no PEM certificate", c.CAFile))
			}
			tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		s, err := aks.New(aks.Config{Common: common(c.Cluster), Brokers: c.Brokers, Topic: c.EventHub,
			Group: c.ConsumerGroup, ConnectionString: c.ConnectionString, TLS: tlsCfg})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "eks-firehose":
		var c eksFirehoseSourceConfig
		if err := decodeNode(item, path, &c); err != nil {
			return nil, err
		}
		s, err := eks.NewFirehose(eks.FirehoseConfig{Common: common(c.Cluster), Listen: c.Listen, Path: c.Path,
			AccessKey: c.AccessKey, TLSCert: c.TLSCert, TLSKey: c.TLSKey})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "eks-cloudwatch":
		var c eksCloudWatchSourceConfig
		if err := decodeNode(item, path, &c); err != nil {
			return nil, err
		}
		cm := common(c.Cluster)
		s, err := eks.NewCloudWatch(eks.CloudWatchConfig{Common: cm, LogGroup: c.LogGroup, Region: c.Region,
			Endpoint: c.Endpoint, PollInterval: c.PollInterval.D(), Lookback: c.Lookback.D(),
			StateFile: filepath.Join(dataDir, "sources", cm.Name+".cursor.json")})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: type %q: want one of %s (line %d)", path, typ, strings.Join(sourceTypes, ", "), item.Line)
}
