package detect

import (
	"encoding/json"
	"reflect"
	"testing"
)

func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

func TestPatchObject(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"json patch makes a container privileged",
			`[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]`,
			`{"spec":{"template":{"spec":{"containers":[{"securityContext":{"privileged":true}}]}}}}`},
		{"append a container and set hostPID",
			`[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"x","image":"alpine"}},{"op":"replace","path":"/spec/template/spec/hostPID","value":true}]`,
			`{"spec":{"template":{"spec":{"containers":[{"name":"x","image":"alpine"}],"hostPID":true}}}}`},
		{"two ops on one element",
			`[{"op":"replace","path":"/spec/containers/1/image","value":"a"},{"op":"add","path":"/spec/containers/1/securityContext/privileged","value":true}]`,
			`{"spec":{"containers":[null,{"image":"a","securityContext":{"privileged":true}}]}}`},
		{"escaped key and remove",
			`[{"op":"remove","path":"/metadata/labels/pod-security.kubernetes.io~1enforce"},{"op":"test","path":"/x","value":1}]`,
			`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}`},
		{"merge patch is kept", `{"spec":{"type":"NodePort"}}`, `{"spec":{"type":"NodePort"}}`},
		{"a list that is not a patch", `[1,2]`, `[1,2]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PatchObject(jsonValue(t, c.in))
			if want := jsonValue(t, c.want); !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				t.Errorf("got %s, want %s", gb, c.want)
			}
		})
	}
}

func TestPodSpecAndContainers(t *testing.T) {
	cases := []struct {
		name, obj string
		// containers are the names of every container found.
		containers []string
	}{
		{"pod", `{"kind":"Pod","spec":{"containers":[{"name":"a"},{"name":"b"}],"initContainers":[{"name":"i"}]}}`, []string{"a", "b", "i"}},
		{"deployment", `{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"a"}]}}}}`, []string{"a"}},
		{"cronjob", `{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c"}]}}}}}}`, []string{"c"}},
		{"pod template", `{"kind":"PodTemplate","template":{"spec":{"containers":[{"name":"t"}]}}}`, []string{"t"}},
		{"strategic merge patch of a deployment (kubectl set image)", `{"spec":{"template":{"spec":{"containers":[{"image":"x:2","name":"a"}]}}}}`, []string{"a"}},
		{"kubectl debug patch", `{"spec":{"ephemeralContainers":[{"name":"debugger"}]}}`, []string{"debugger"}},
		{"json patch", `[{"op":"add","path":"/spec/template/spec/initContainers/-","value":{"name":"evil"}}]`, []string{"evil"}},
		{"scale patch", `{"spec":{"replicas":3}}`, nil},
		{"service", `{"kind":"Service","spec":{"type":"NodePort"}}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var names []string
			for _, ct := range containers(jsonValue(t, c.obj)) {
				names = append(names, ct.(map[string]any)["name"].(string))
			}
			if !reflect.DeepEqual(names, c.containers) {
				t.Errorf("containers %v, want %v", names, c.containers)
			}
		})
	}
}

func TestImageRegistryAndTag(t *testing.T) {
	for _, c := range []struct{ image, registry, tag string }{
		{"nginx", "docker.io", ""},
		{"nginx:latest", "docker.io", "latest"},
		{"library/busybox:1.36", "docker.io", "1.36"},
		{"registry.k8s.io/kube-proxy:v1.34.4", "registry.k8s.io", "v1.34.4"},
		{"localhost:5000/tool", "localhost:5000", ""},
		{"203.0.113.9:5000/miner:v1", "203.0.113.9:5000", "v1"},
		{"ghcr.io/org/app@sha256:abcd", "ghcr.io", "@sha256:abcd"},
		{"Quay.IO/x/y:2", "quay.io", "2"},
		{"", "", ""},
	} {
		if r, tag := ImageRegistry(c.image), ImageTag(c.image); r != c.registry || tag != c.tag {
			t.Errorf("%q: registry %q tag %q, want %q %q", c.image, r, tag, c.registry, c.tag)
		}
	}
}
