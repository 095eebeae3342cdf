package auditgen

import "strconv"

// Request and response bodies of the events logged at Request or
// RequestResponse level, shaped like the ones the apiserver writes.

// created is the creationTimestamp of the simulated cluster's objects.
const created = `"2026-10-01T08:00:00Z"`

func (g *Generator) nodeStatusPatch(e *event) {
	b := append(g.req[:0], `{"status":{"$setElementOrder/conditions":[{"type":"MemoryPressure"},{"type":"DiskPressure"},{"type":"PIDPressure"},{"type":"Ready"}],"conditions":[`...)
	for i, t := range []string{"MemoryPressure", "DiskPressure", "PIDPressure", "Ready"} {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"lastHeartbeatTime":"`...)
		b = g.appendSecTime(b, g.now)
		b = append(b, `","type":"`...)
		b = append(b, t...)
		b = append(b, `"}`...)
	}
	b = append(b, `]}}`...)
	g.req = b
	e.req = b
}

func (g *Generator) podStatusPatch(e *event, d *deployment, i int) {
	b := append(g.req[:0], `{"metadata":{"uid":"`...)
	b = append(b, d.podUIDs[i]...)
	b = append(b, `"},"status":{"$setElementOrder/conditions":[{"type":"PodReadyToStartContainers"},{"type":"Initialized"},{"type":"Ready"},{"type":"ContainersReady"},{"type":"PodScheduled"}],"conditions":[{"lastTransitionTime":"`...)
	b = g.appendSecTime(b, g.now)
	b = append(b, `","status":"True","type":"Ready"},{"lastTransitionTime":"`...)
	b = g.appendSecTime(b, g.now)
	b = append(b, `","status":"True","type":"ContainersReady"}],"containerStatuses":[{"containerID":"containerd://`...)
	b = append(b, randHex16(g)...)
	b = append(b, randHex16(g)...)
	b = append(b, randHex16(g)...)
	b = append(b, randHex16(g)...)
	b = append(b, `","image":`...)
	b = appendStr(b, d.image)
	b = append(b, `,"imageID":`...)
	b = appendStr(b, d.image)
	b = append(b[:len(b)-1], `@sha256:`...)
	b = append(b, d.digest...)
	b = append(b, `","lastState":{},"name":`...)
	b = appendStr(b, d.name)
	b = append(b, `,"ready":true,"restartCount":`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(3)), 10)
	b = append(b, `,"started":true,"state":{"running":{"startedAt":"`...)
	b = g.appendSecTime(b, g.now-int64(g.r.IntN(3600))*1e6)
	b = append(b, `"}}}],"phase":"Running","podIP":"100.64.`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(1+g.r.IntN(254)), 10)
	b = append(b, `"}}`...)
	g.req = b
	e.req = b
}

// deploymentPatch fills a server-side or client-side apply of a new image:
// the patch document as the request and the whole Deployment as the
// response.
func (g *Generator) deploymentPatch(e *event, ns *namespace, d *deployment, manager string) {
	d.generation++
	version := strconv.Itoa(g.r.IntN(30)) + "." + strconv.Itoa(g.r.IntN(10))
	image := d.image[:indexColon(d.image)] + ":1." + version

	b := append(g.req[:0], `{"spec":{"template":{"spec":{"containers":[{"image":`...)
	b = appendStr(b, image)
	b = append(b, `,"name":`...)
	b = appendStr(b, d.name)
	b = append(b, `}]}}}}`...)
	g.req = b
	e.req = b

	r := append(g.resp[:0], `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":`...)
	r = appendStr(r, d.name)
	r = append(r, `,"namespace":`...)
	r = appendStr(r, ns.name)
	r = append(r, `,"uid":"`...)
	r = append(r, d.uid...)
	r = append(r, `","resourceVersion":"`...)
	r = strconv.AppendUint(r, g.nextRV(), 10)
	r = append(r, `","generation":`...)
	r = strconv.AppendInt(r, int64(d.generation), 10)
	r = append(r, `,"creationTimestamp":`+created+`,"labels":{"app.kubernetes.io/name":`...)
	r = appendStr(r, d.name)
	r = append(r, `,"app.kubernetes.io/part-of":`...)
	r = appendStr(r, ns.name)
	r = append(r, `},"annotations":{"deployment.kubernetes.io/revision":"`...)
	r = strconv.AppendInt(r, int64(d.generation), 10)
	r = append(r, `"},"managedFields":[{"manager":`...)
	r = appendStr(r, manager)
	r = append(r, `,"operation":"Update","apiVersion":"apps/v1","time":"`...)
	r = g.appendSecTime(r, g.now)
	r = append(r, `","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"`...)
	r = append(r, d.name...)
	r = append(r, `\"}":{".":{},"f:image":{},"f:name":{}}}}}}}},{"manager":"kube-controller-manager","operation":"Update","apiVersion":"apps/v1","time":"`...)
	r = g.appendSecTime(r, g.now-int64(g.r.IntN(86400))*1e6)
	r = append(r, `","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:availableReplicas":{},"f:conditions":{},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}},"subresource":"status"}]},"spec":{"replicas":`...)
	r = strconv.AppendInt(r, int64(len(d.pods)), 10)
	r = append(r, `,"selector":{"matchLabels":{"app.kubernetes.io/name":`...)
	r = appendStr(r, d.name)
	r = append(r, `}},"template":{"metadata":{"labels":{"app.kubernetes.io/name":`...)
	r = appendStr(r, d.name)
	r = append(r, `}},"spec":{"containers":[{"name":`...)
	r = appendStr(r, d.name)
	r = append(r, `,"image":`...)
	r = appendStr(r, image)
	r = append(r, `,"ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"memory":"512Mi"},"requests":{"cpu":"100m","memory":"256Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":`...)
	r = appendStr(r, d.name)
	r = append(r, `,"serviceAccount":`...)
	r = appendStr(r, d.name)
	r = append(r, `,"securityContext":{},"schedulerName":"default-scheduler"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}},"revisionHistoryLimit":10,"progressDeadlineSeconds":600},"status":{"observedGeneration":`...)
	r = strconv.AppendInt(r, int64(d.generation-1), 10)
	n := strconv.AppendInt(nil, int64(len(d.pods)), 10)
	r = append(r, `,"replicas":`...)
	r = append(r, n...)
	r = append(r, `,"updatedReplicas":`...)
	r = append(r, n...)
	r = append(r, `,"readyReplicas":`...)
	r = append(r, n...)
	r = append(r, `,"availableReplicas":`...)
	r = append(r, n...)
	r = append(r, `,"conditions":[{"type":"Available","status":"True","lastUpdateTime":`+created+`,"lastTransitionTime":`+created+`,"reason":"MinimumReplicasAvailable","message":"Deployment has minimum availability."},{"type":"Progressing","status":"True","lastUpdateTime":"`...)
	r = g.appendSecTime(r, g.now)
	r = append(r, `","lastTransitionTime":`+created+`,"reason":"NewReplicaSetAvailable","message":"ReplicaSet \"`...)
	r = append(r, d.name...)
	r = append(r, '-')
	r = append(r, d.hash...)
	r = append(r, `\" has successfully progressed."}]}}`...)
	g.resp = r
	e.resp = r
}

func indexColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return len(s)
}

// roleBinding fills the request and response of a (Cluster)RoleBinding
// create that binds role to the user subject.
func (g *Generator) roleBinding(e *event, subject, role string) {
	kind := "RoleBinding"
	if e.resource == "clusterrolebindings" {
		kind = "ClusterRoleBinding"
	}
	meta := func(b []byte) []byte {
		b = append(b, `{"kind":"`...)
		b = append(b, kind...)
		b = append(b, `","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":`...)
		b = appendStr(b, e.name)
		if e.namespace != "" {
			b = append(b, `,"namespace":`...)
			b = appendStr(b, e.namespace)
		}
		return b
	}
	tail := func(b []byte) []byte {
		b = append(b, `,"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":`...)
		b = appendStr(b, subject)
		b = append(b, `}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":`...)
		b = appendStr(b, role)
		return append(b, `}}`...)
	}
	b := meta(g.req[:0])
	b = append(b, `,"creationTimestamp":null}`...)
	b = tail(b)
	g.req = b
	e.req = b

	r := meta(g.resp[:0])
	r = append(r, `,"uid":"`...)
	r = g.appendUUID(r)
	r = append(r, `","resourceVersion":"`...)
	r = strconv.AppendUint(r, g.nextRV(), 10)
	r = append(r, `","creationTimestamp":"`...)
	r = g.appendSecTime(r, g.now)
	r = append(r, `","managedFields":[{"manager":"kubectl-create","operation":"Update","apiVersion":"rbac.authorization.k8s.io/v1","time":"`...)
	r = g.appendSecTime(r, g.now)
	r = append(r, `","fieldsType":"FieldsV1","fieldsV1":{"f:roleRef":{},"f:subjects":{}}}]}`...)
	r = tail(r)
	g.resp = r
	e.resp = r
}

// replicaSetStatus fills a ReplicaSet status update: the object as the
// request, and as the response with its new resourceVersion and managed
// fields.
func (g *Generator) replicaSetStatus(e *event, ns *namespace, d *deployment) {
	obj := func(b []byte, rv uint64, managed bool) []byte {
		b = append(b, `{"kind":"ReplicaSet","apiVersion":"apps/v1","metadata":{"name":"`...)
		b = append(b, d.name...)
		b = append(b, '-')
		b = append(b, d.hash...)
		b = append(b, `","namespace":`...)
		b = appendStr(b, ns.name)
		b = append(b, `,"uid":"`...)
		b = append(b, d.uid[:24]...)
		b = append(b, d.hash...)
		b = append(b, d.uid[34:]...)
		b = append(b, `","resourceVersion":"`...)
		b = strconv.AppendUint(b, rv, 10)
		b = append(b, `","generation":`...)
		b = strconv.AppendInt(b, int64(d.generation), 10)
		b = append(b, `,"creationTimestamp":`+created+`,"labels":{"app.kubernetes.io/name":`...)
		b = appendStr(b, d.name)
		b = append(b, `,"pod-template-hash":"`...)
		b = append(b, d.hash...)
		b = append(b, `"},"annotations":{"deployment.kubernetes.io/desired-replicas":"`...)
		n := strconv.AppendInt(nil, int64(len(d.pods)), 10)
		b = append(b, n...)
		b = append(b, `","deployment.kubernetes.io/max-replicas":"`...)
		b = strconv.AppendInt(b, int64(len(d.pods)+1), 10)
		b = append(b, `","deployment.kubernetes.io/revision":"`...)
		b = strconv.AppendInt(b, int64(d.generation), 10)
		b = append(b, `"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":`...)
		b = appendStr(b, d.name)
		b = append(b, `,"uid":"`...)
		b = append(b, d.uid...)
		b = append(b, `","controller":true,"blockOwnerDeletion":true}]`...)
		if managed {
			b = append(b, `,"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"apps/v1","time":"`...)
			b = g.appendSecTime(b, g.now)
			b = append(b, `","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:availableReplicas":{},"f:fullyLabeledReplicas":{},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{}}},"subresource":"status"}]`...)
		}
		b = append(b, `},"spec":{"replicas":`...)
		b = append(b, n...)
		b = append(b, `,"selector":{"matchLabels":{"app.kubernetes.io/name":`...)
		b = appendStr(b, d.name)
		b = append(b, `,"pod-template-hash":"`...)
		b = append(b, d.hash...)
		b = append(b, `"}}},"status":{"replicas":`...)
		b = append(b, n...)
		b = append(b, `,"fullyLabeledReplicas":`...)
		b = append(b, n...)
		b = append(b, `,"readyReplicas":`...)
		b = append(b, n...)
		b = append(b, `,"availableReplicas":`...)
		b = append(b, n...)
		b = append(b, `,"observedGeneration":`...)
		b = strconv.AppendInt(b, int64(d.generation), 10)
		return append(b, `}}`...)
	}
	rv := g.nextRV()
	g.req = obj(g.req[:0], rv-1-g.r.Uint64N(50), false)
	e.req = g.req
	g.resp = obj(g.resp[:0], rv, true)
	e.resp = g.resp
}
