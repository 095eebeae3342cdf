package detect

import (
	"reflect"
	"testing"
)

func TestNetworks(t *testing.T) {
	l := compileLists(map[string][]string{
		"cluster_networks": {"10.0.0.0/8", "127.0.0.0/8", "::1", "fd00::/8", "not-a-network"},
		"empty":            {},
	})
	for _, c := range []struct {
		ips     []string
		inside  bool // inNetworks of the first
		outside bool
	}{
		{[]string{"10.1.2.3"}, true, false},
		{[]string{"127.0.0.1"}, true, false},
		{[]string{"::1"}, true, false},
		{[]string{"::ffff:10.0.0.1"}, true, false},
		{[]string{"203.0.113.9"}, false, true},
		{[]string{"10.0.0.5", "203.0.113.9"}, true, true},
		{[]string{"garbage"}, false, true},
		{nil, false, false},
	} {
		first := ""
		if len(c.ips) > 0 {
			first = c.ips[0]
		}
		if got := l.inNetworks("cluster_networks", first); got != c.inside {
			t.Errorf("inNetworks(%q) = %v", first, got)
		}
		if got := l.outsideNetworks("cluster_networks", c.ips); got != c.outside {
			t.Errorf("outsideNetworks(%v) = %v", c.ips, got)
		}
	}
	if l.outsideNetworks("empty", []string{"203.0.113.9"}) {
		t.Error("a list without networks judged an address outside")
	}
}

func TestCredentialKeys(t *testing.T) {
	for _, c := range []struct {
		name, obj string
		want      []string
	}{
		{"aws keys", `{"data":{"aws_access_key_id":"AKIAIOSFODNN7EXAMPLE","region":"eu-west-1"}}`, []string{"aws_access_key_id"}},
		{"password key", `{"data":{"DB_PASSWORD":"hunter22","DB_HOST":"db"}}`, []string{"DB_PASSWORD"}},
		{"passphrase in a config file", `{"data":{"app.ini":"[tls]\npassphrase = s3cr3t-phrase\n"}}`, []string{"app.ini"}},
		{"private key", `{"data":{"key.pem":"-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n"}}`, []string{"key.pem"}},
		{"access key id in a value", `{"data":{"env":"export KEY=AKIAIOSFODNN7EXAMPLE"}}`, []string{"env"}},
		{"json patch", `[{"op":"add","path":"/data/api_key","value":"abcdef123456"}]`, []string{"api_key"}},
		{"settings that mention passwords", `{"data":{"passwordMinLength":"12","password_policy":"strict","secretName":"db-creds","PASSWORD_FILE":"/run/secrets/pw"}}`, nil},
		{"templated and empty values", `{"data":{"password":"${DB_PASSWORD}","api_key":"","token_ttl":"3600"}}`, nil},
		{"ordinary config", `{"data":{"nginx.conf":"server { listen 80; }","LOG_LEVEL":"info"}}`, nil},
		{"not a configmap", `"x"`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := CredentialKeys(jsonValue(t, c.obj)); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestAgentFits(t *testing.T) {
	l := compileLists(map[string][]string{"ua": {"system:node:*=kubelet/*", "system:kube-scheduler=kube-scheduler/*", "no-pair"}})
	for _, c := range []struct {
		user, agent string
		want        bool
	}{
		{"system:node:n1", "kubelet/v1.34.4 (linux/amd64) kubernetes/$Format", true},
		{"system:node:n1", "kubectl/v1.33.1", false},
		{"system:kube-scheduler", "kube-scheduler/v1.34.4/leader-election", true},
		{"system:kube-scheduler", "kubelet/v1.34.4", false},
		{"no-pair", "", false},
	} {
		if got := l.agentFits("ua", c.user, c.agent); got != c.want {
			t.Errorf("agentFits(%q, %q) = %v", c.user, c.agent, got)
		}
	}
}
