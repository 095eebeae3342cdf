package detect

import (
	"strconv"
	"strings"
)

// PatchObject returns the object a request body writes. A JSON patch (a
// list of operations) becomes the sparse object its add and replace
// operations set, with null where remove deletes; a merge or strategic
// merge patch, or a whole object, is returned as it is. Rules can then read
// "what the request sets" the same way for create, update and every patch
// type: kubectl patch --type=json, --type=merge, kubectl set image, apply.
func PatchObject(obj any) any {
	ops, ok := obj.([]any)
	if !ok || len(ops) == 0 {
		return obj
	}
	root := map[string]any{}
	for _, o := range ops {
		op, _ := o.(map[string]any)
		if op == nil {
			return obj // not a JSON patch
		}
		kind, _ := op["op"].(string)
		p, _ := op["path"].(string)
		if kind == "" || !strings.HasPrefix(p, "/") {
			return obj
		}
		switch kind {
		case "add", "replace":
			setPointer(root, p, op["value"])
		case "remove":
			setPointer(root, p, nil)
		}
	}
	return root
}

// setPointer sets the value at a JSON pointer in a sparse object, creating
// maps and lists on the way; a list index past the end (or "-") appends.
func setPointer(root map[string]any, pointer string, v any) {
	segs := strings.Split(pointer[1:], "/")
	for i := range segs {
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(segs[i], "~1", "/"), "~0", "~")
	}
	setIn(root, segs, v)
}

// maxPatchIndex bounds the padding of a sparse list.
const maxPatchIndex = 1000

func setIn(cur any, segs []string, v any) any {
	if len(segs) == 0 {
		return v
	}
	seg := segs[0]
	switch c := cur.(type) {
	case []any:
		idx, err := strconv.Atoi(seg)
		if err != nil || idx < 0 || idx > maxPatchIndex {
			return append(c, setIn(nil, segs[1:], v))
		}
		for len(c) <= idx {
			// Keep positions: two operations on element 1 meet there.
			c = append(c, nil)
		}
		c[idx] = setIn(c[idx], segs[1:], v)
		return c
	case map[string]any:
		c[seg] = setIn(c[seg], segs[1:], v)
		return c
	}
	if _, err := strconv.Atoi(seg); err == nil || seg == "-" {
		return setIn([]any{}, segs, v)
	}
	return setIn(map[string]any{}, segs, v)
}

// podSpecPaths are where workload kinds keep their pod spec.
var podSpecPaths = [][]string{
	{"spec", "template", "spec"},                        // Deployment, DaemonSet, StatefulSet, ReplicaSet, Job, ReplicationController
	{"spec", "jobTemplate", "spec", "template", "spec"}, // CronJob
	{"template", "spec"},                                // PodTemplate
}

// podSpecKeys are fields only a pod spec has: a body with one of them under
// spec is a Pod (or a patch of one), whatever its kind says.
var podSpecKeys = []string{"containers", "initContainers", "ephemeralContainers", "volumes", "hostNetwork",
	"hostPID", "hostIPC", "securityContext", "serviceAccountName", "nodeName", "hostAliases"}

// podSpec returns the pod spec inside a Pod, a workload object or a patch
// of either (see PatchObject), or nil.
func podSpec(obj any) map[string]any {
	m, _ := PatchObject(obj).(map[string]any)
	if m == nil {
		return nil
	}
	kind, _ := m["kind"].(string)
	if spec, ok := m["spec"].(map[string]any); ok && (kind == "Pod" || kind == "" || kind == "EphemeralContainers") {
		for _, k := range podSpecKeys {
			if _, ok := spec[k]; ok {
				return spec
			}
		}
	}
	for _, p := range podSpecPaths {
		if spec, ok := dig(m, p).(map[string]any); ok {
			return spec
		}
	}
	return nil
}

func dig(m map[string]any, keys []string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

// containers returns every container of a pod or workload object (or a
// patch of one): containers, initContainers and ephemeralContainers.
func containers(obj any) []any {
	spec := podSpec(obj)
	if spec == nil {
		return nil
	}
	var out []any
	for _, k := range []string{"containers", "initContainers", "ephemeralContainers"} {
		if cs, ok := spec[k].([]any); ok {
			for _, c := range cs {
				if c != nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// ImageRegistry returns the registry host an image reference pulls from:
// the part before the first "/" when it looks like a host (has a dot or a
// port, or is localhost), else docker.io, as the container runtimes read it.
func ImageRegistry(image string) string {
	if image == "" {
		return ""
	}
	host, _, ok := strings.Cut(image, "/")
	if ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		return strings.ToLower(host)
	}
	return "docker.io"
}

// ImageTag returns an image reference's tag: "" when there is none (the
// runtime pulls latest), "@" + the digest when it is pinned by digest.
func ImageTag(image string) string {
	if i := strings.LastIndexByte(image, '@'); i >= 0 {
		return image[i:]
	}
	name := image
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return ""
}
