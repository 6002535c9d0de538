package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/collectorconfig"
)

// RunAsUser is the collector image's user (Dockerfile USER).
const RunAsUser = 10001

// drainMargin is time the collector needs on shutdown besides the exporter's
// in-flight request and the batch flush: stopping receivers and extensions,
// closing the queue's storage.
const drainMargin = 10 * time.Second

// CheckWorkload applies the availability, hardening and consistency rules to
// a collector workload; cfgText is its collector config, env its environment.
func CheckWorkload(w Workload, cfgText string, env map[string]string) Findings {
	var fs Findings
	id := w.ID()
	spec := w.Template.Spec
	c := w.Container()
	if c == nil {
		fs.add("container", id, "no container")
		return fs
	}

	// Availability.
	if w.Replicas == nil || *w.Replicas < 2 {
		fs.add("replicas", id, "replicas must be at least 2, so one collector is always up (got %v)", deref(w.Replicas))
	}
	switch {
	case w.Deployment != nil:
		s := w.Deployment.Spec.Strategy
		if s.Type != "RollingUpdate" || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil ||
			intstr.ValueOrDefault(s.RollingUpdate.MaxUnavailable, intstr.FromInt32(1)).String() != "0" {
			fs.add("rollout", id, "strategy must be RollingUpdate with maxUnavailable: 0, so a rollout never lowers capacity")
		}
	case w.StatefulSet != nil:
		if t := w.StatefulSet.Spec.UpdateStrategy.Type; t != "" && t != "RollingUpdate" {
			fs.add("rollout", id, "updateStrategy must be RollingUpdate, got %s", t)
		}
	}
	if w.Template.Annotations["sidecar.istio.io/inject"] != "false" {
		fs.add("sidecar", id, `pod annotation sidecar.istio.io/inject must be "false"`)
	}

	cfg, err := collectorconfig.Parse(cfgText, env)
	if err != nil {
		fs.add("config", id, "%v", err)
		return fs
	}

	// Probes on the health_check endpoint.
	hc, err := cfg.HealthCheck()
	if err != nil {
		fs.add("health-check", id, "%v", err)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}, {"startup", c.StartupProbe}} {
		if p.probe == nil {
			fs.add("probe."+p.name, id, "no %sProbe: health_check is on, use it", p.name)
			continue
		}
		if p.probe.HTTPGet == nil {
			fs.add("probe."+p.name, id, "%sProbe must be an httpGet on health_check", p.name)
			continue
		}
		port, ok := containerPort(c, p.probe.HTTPGet.Port)
		if !ok || port != hc.Port {
			fs.add("probe."+p.name, id, "%sProbe port %s is not the health_check port %d", p.name, p.probe.HTTPGet.Port.String(), hc.Port)
		}
		if p.probe.HTTPGet.Path != hc.Path {
			fs.add("probe."+p.name, id, "%sProbe path %q is not the health_check path %q", p.name, p.probe.HTTPGet.Path, hc.Path)
		}
	}

	// MY_POD_IP from the downward API when the config binds to it.
	if strings.Contains(cfgText, "MY_POD_IP") {
		if e := envVar(c, "MY_POD_IP"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
			fs.add("pod-ip", id, "MY_POD_IP must come from fieldRef status.podIP")
		}
	}

	// Every port the receivers listen on is a container port.
	ports, err := cfg.OTLPReceiverPorts()
	if err != nil {
		fs.add("config", id, "%v", err)
	}
	for _, rp := range ports {
		if _, ok := containerPort(c, intstr.FromInt32(rp.Port)); !ok {
			fs.add("ports", id, "receiver %s %s listens on %d, which is not a container port", rp.Receiver, rp.Protocol, rp.Port)
		}
	}

	fs = append(fs, checkResources(id, c, cfg)...)
	fs = append(fs, checkQueueVolume(w, c, cfg)...)
	fs = append(fs, checkSecurity(id, spec, c)...)
	fs = append(fs, checkGrace(id, spec, c, cfg)...)
	fs = append(fs, checkImage(id, c)...)
	fs = append(fs, checkEnvSecrets(id, c)...)
	for i := 1; i < len(spec.Containers); i++ {
		fs = append(fs, checkHelperContainer(id+"/"+spec.Containers[i].Name, spec, &spec.Containers[i])...)
	}
	return fs
}

// checkRequestsAndLimits: a CPU and a memory request and limit.
func checkRequestsAndLimits(id string, c *corev1.Container) Findings {
	var fs Findings
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			fs.add("resources", id, "no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			fs.add("resources", id, "no %s limit", r)
		}
	}
	return fs
}

// checkHelperContainer holds a container beside the collector (such as a
// readiness check) to the same hardening, image pinning and resource rules.
func checkHelperContainer(id string, spec corev1.PodSpec, c *corev1.Container) Findings {
	fs := checkRequestsAndLimits(id, c)
	fs = append(fs, checkSecurity(id, spec, c)...)
	fs = append(fs, checkImage(id, c)...)
	fs = append(fs, checkEnvSecrets(id, c)...)
	return fs
}

func checkResources(id string, c *corev1.Container, cfg *collectorconfig.Config) Findings {
	fs := checkRequestsAndLimits(id, c)
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return fs
	}
	ml, err := cfg.MemoryLimiter(limit.Value())
	if err != nil {
		fs.add("memory-limiter", id, "%v", err)
		return fs
	}
	if ml.Hard >= limit.Value() {
		fs.add("memory-limiter", id, "%s limit %s is not below the container's memory limit %s", ml.ID, mib(ml.Hard), limit.String())
	}
	e := envVar(c, "GOMEMLIMIT")
	if e == nil || e.Value == "" {
		fs.add("gomemlimit", id, "GOMEMLIMIT is not set: the Go GC does not know the memory limit")
		return fs
	}
	goLimit, err := parseGoMemLimit(e.Value)
	if err != nil {
		fs.add("gomemlimit", id, "GOMEMLIMIT %q: %v", e.Value, err)
		return fs
	}
	// The GC should tighten before the limiter forces a GC and refuses data
	// (GOMEMLIMIT <= hard limit), but not before the soft limit, or it would
	// collect continuously while the limiter still accepts (>= soft limit).
	if goLimit > ml.Hard || goLimit < ml.Soft {
		fs.add("gomemlimit", id, "GOMEMLIMIT %s must lie between %s's soft limit %s and hard limit %s (container limit %s)",
			e.Value, ml.ID, mib(ml.Soft), mib(ml.Hard), limit.String())
	}
	return fs
}

func checkQueueVolume(w Workload, c *corev1.Container, cfg *collectorconfig.Config) Findings {
	var fs Findings
	id := w.ID()
	// queue_storage (shipped) and file_storage both keep the queue in a directory.
	for _, fsx := range slices.Concat(cfg.OfType("extensions", "queue_storage"), cfg.OfType("extensions", "file_storage")) {
		dir := collectorconfig.GetString(fsx.Settings, "directory")
		if dir == "" {
			fs.add("queue-volume", id, "extensions::%s has no directory", fsx.ID)
			continue
		}
		m := mountFor(c, dir)
		if m == nil {
			fs.add("queue-volume", id, "extensions::%s directory %s is on no volume (the root filesystem is read-only, and the queue must outlive the container)", fsx.ID, dir)
			continue
		}
		if m.ReadOnly {
			fs.add("queue-volume", id, "volume %s holding %s is mounted read-only", m.Name, dir)
		}
		if !hasVolume(w, m.Name) {
			fs.add("queue-volume", id, "volume %s is not defined", m.Name)
			continue
		}
		fs = append(fs, checkQueueSize(id, fsx.ID, m.Name, volumeSize(w, m.Name), cfg)...)
	}
	return fs
}

// QueueFileOverhead is how much larger than the bytes it counts the
// persistent queue's files may grow: measured 1.00 with queue_storage and
// 1.30-1.35 with file_storage (e2e TestQueueSizedInBytes, 8 MiB queued:
// bbolt pages and free lists), bounded at 2 for either.
const QueueFileOverhead = 2

// checkQueueSize: every sending queue stored on the volume is sized in
// bytes, and QueueFileOverhead times its queue_size fits in the volume. A
// full disk refuses senders, but upstream's queue can then also discard
// accepted spans and over-counts its size (README "Loss guarantees"), so
// the queue must refuse first.
func checkQueueSize(id, storageID, volume string, size int64, cfg *collectorconfig.Config) Findings {
	var fs Findings
	for _, exp := range cfg.Components("exporters") {
		if collectorconfig.GetString(exp.Settings, "sending_queue", "storage") != storageID {
			continue
		}
		if sizer := collectorconfig.GetString(exp.Settings, "sending_queue", "sizer"); sizer != "bytes" {
			fs.add("queue-size", id, "exporters::%s::sending_queue sizer is %q: size the queue in bytes, so it can be kept below its volume %s", exp.ID, sizer, volume)
			continue
		}
		v, _ := collectorconfig.Get(exp.Settings, "sending_queue", "queue_size")
		var queueSize int64
		switch n := v.(type) { // YAML numbers decode as float64 (JSON), or int
		case float64:
			queueSize = int64(n)
		case int:
			queueSize = int64(n)
		}
		if queueSize <= 0 {
			fs.add("queue-size", id, "exporters::%s::sending_queue queue_size %v is not a positive number of bytes", exp.ID, v)
			continue
		}
		switch {
		case size <= 0:
			fs.add("queue-size", id, "volume %s holding the queue of %s has no size (emptyDir sizeLimit or a PersistentVolumeClaim storage request)", volume, exp.ID)
		case queueSize*QueueFileOverhead >= size:
			fs.add("queue-size", id, "exporters::%s::sending_queue queue_size %s times %d (its file's overhead) does not fit volume %s of %s",
				exp.ID, mib(queueSize), QueueFileOverhead, volume, mib(size))
		}
	}
	return fs
}

// volumeSize is the size of a pod volume: an emptyDir's sizeLimit or a
// volumeClaimTemplate's storage request; 0 when it has none.
func volumeSize(w Workload, name string) int64 {
	for _, v := range w.Template.Spec.Volumes {
		if v.Name == name && v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
			return v.EmptyDir.SizeLimit.Value()
		}
	}
	if w.StatefulSet != nil {
		for _, t := range w.StatefulSet.Spec.VolumeClaimTemplates {
			if t.Name == name {
				if q, ok := t.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
					return q.Value()
				}
			}
		}
	}
	return 0
}

func checkSecurity(id string, spec corev1.PodSpec, c *corev1.Container) Findings {
	var fs Findings
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	if !boolOr(csc.RunAsNonRoot, psc.RunAsNonRoot) {
		fs.add("security.non-root", id, "runAsNonRoot must be true")
	}
	if u := int64Or(csc.RunAsUser, psc.RunAsUser); u != RunAsUser {
		fs.add("security.uid", id, "runAsUser must be %d (the image's user), got %d", RunAsUser, u)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		fs.add("security.read-only-root", id, "readOnlyRootFilesystem must be true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		fs.add("security.privilege-escalation", id, "allowPrivilegeEscalation must be false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		fs.add("security.privileged", id, "privileged must not be true")
	}
	dropsAll := false
	if csc.Capabilities != nil {
		for _, d := range csc.Capabilities.Drop {
			dropsAll = dropsAll || d == "ALL"
		}
		if len(csc.Capabilities.Add) > 0 {
			fs.add("security.capabilities", id, "adds capabilities %v", csc.Capabilities.Add)
		}
	}
	if !dropsAll {
		fs.add("security.capabilities", id, "capabilities must drop ALL")
	}
	seccomp := csc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fs.add("security.seccomp", id, "seccompProfile must be RuntimeDefault")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		fs.add("security.host", id, "must not share the host's network, PID or IPC namespace")
	}
	return fs
}

// checkGrace: terminationGracePeriodSeconds must cover preStop, the batch
// flush, the exporter's last in-flight request, and the rest of the shutdown.
func checkGrace(id string, spec corev1.PodSpec, c *corev1.Container, cfg *collectorconfig.Config) Findings {
	var fs Findings
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	var batch time.Duration
	for _, b := range cfg.OfType("processors", "batch") {
		d, err := collectorconfig.Duration(b.Settings, "timeout", 200*time.Millisecond)
		if err != nil {
			fs.add("config", id, "processors::%s: %v", b.ID, err)
		}
		batch = max(batch, d)
	}
	var export time.Duration
	for _, e := range cfg.Components("exporters") {
		if e.Type == "debug" || e.Type == "nop" {
			continue
		}
		d, err := collectorconfig.Duration(e.Settings, "timeout", 5*time.Second)
		if err != nil {
			fs.add("config", id, "exporters::%s: %v", e.ID, err)
		}
		export += d
	}
	need := preStop + batch + export + drainMargin
	grace := 30 * time.Second // Kubernetes' default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace < need {
		fs.add("grace", id, "terminationGracePeriodSeconds %s is shorter than preStop %s + batch flush %s + exporter timeouts %s + %s",
			grace, preStop, batch, export, drainMargin)
	}
	return fs
}

func checkImage(id string, c *corev1.Container) Findings {
	var fs Findings
	ref := c.Image
	if at := strings.LastIndex(ref, "@"); at >= 0 {
		return fs // pinned by digest
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash || strings.HasSuffix(ref, ":latest") {
		fs.add("image", id, "image %q must be pinned to a version tag or digest", ref)
	}
	return fs
}

// authHeader names the headers that carry credentials whatever their value.
var authHeader = regexp.MustCompile(`(?i)^(authorization|authentication|x-api-key)$`)

// secretName matches names of settings that hold credentials.
var secretName = regexp.MustCompile(`(?i)(token|password|passwd|secret|api[-_]?key|credential|private[-_]?key)`)

func checkEnvSecrets(id string, c *corev1.Container) Findings {
	var fs Findings
	for _, e := range c.Env {
		if secretName.MatchString(e.Name) && !strings.HasSuffix(e.Name, "_FILE") && e.ValueFrom == nil && e.Value != "" {
			fs.add("credential-in-plaintext", id, "env %s has a literal value: take it from a Secret", e.Name)
		}
	}
	return fs
}

// CheckConfigMap finds credentials kept in a ConfigMap, directly or inside a
// collector config, and plaintext export configured in a collector config.
func CheckConfigMap(cm *corev1.ConfigMap) Findings {
	var fs Findings
	id := "ConfigMap/" + cm.Name
	for k, v := range cm.Data {
		if secretName.MatchString(k) && strings.TrimSpace(v) != "" && !strings.HasSuffix(k, "_FILE") {
			fs.add("credential-in-configmap", id, "key %s looks like a credential: keep it in a Secret", k)
		}
		if !strings.Contains(v, "exporters:") {
			continue
		}
		cfg, err := collectorconfig.ParseRaw(v)
		if err != nil {
			fs.add("config", id, "%s: %v", k, err)
			continue
		}
		fs = append(fs, checkCollectorCredentials(id, k, cfg)...)
	}
	return fs
}

func checkCollectorCredentials(id, key string, cfg *collectorconfig.Config) Findings {
	var fs Findings
	literal := func(v any) bool {
		s, ok := v.(string)
		return ok && strings.TrimSpace(s) != "" && !strings.Contains(s, "${")
	}
	for _, section := range []string{"exporters", "extensions"} {
		for _, comp := range cfg.Components(section) {
			where := fmt.Sprintf("%s: %s::%s", key, section, comp.ID)
			headers, _ := comp.Settings["headers"].(map[string]any)
			for h, v := range headers {
				if literal(v) && (secretName.MatchString(h) || authHeader.MatchString(h)) {
					fs.add("credential-in-configmap", id, "%s header %s has a literal credential: read it from a Secret", where, h)
				}
			}
			for k, v := range comp.Settings {
				if (k == "token" || k == "password" || k == "api_key" || k == "key") && literal(v) {
					fs.add("credential-in-configmap", id, "%s %s is a literal credential: read it from a Secret", where, k)
				}
			}
			if section != "exporters" {
				continue
			}
			if ins, _ := collectorconfig.Get(comp.Settings, "tls", "insecure"); ins == true {
				fs.add("plaintext-export", id, "%s sets tls.insecure: true: the token would cross the network in plaintext", where)
			}
			if ep, _ := comp.Settings["endpoint"].(string); strings.HasPrefix(ep, "http://") {
				fs.add("plaintext-export", id, "%s exports to %s in plaintext", where, ep)
			}
		}
	}
	return fs
}

func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func mountFor(c *corev1.Container, dir string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		mp := strings.TrimSuffix(m.MountPath, "/")
		if dir == mp || strings.HasPrefix(dir, mp+"/") {
			if best == nil || len(mp) > len(best.MountPath) {
				best = m
			}
		}
	}
	return best
}

func hasVolume(w Workload, name string) bool {
	for _, v := range w.Template.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	if w.StatefulSet != nil {
		for _, t := range w.StatefulSet.Spec.VolumeClaimTemplates {
			if t.Name == name {
				return true
			}
		}
	}
	return false
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does: bytes, or a number
// with B, KiB, MiB, GiB or TiB.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			q, err := resource.ParseQuantity(n)
			if err != nil {
				return 0, err
			}
			return q.Value() * u.mult, nil
		}
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || strings.ContainsAny(s, "KMGTPEikmgtpe") {
		return 0, errors.New("not a Go memory limit (use e.g. 700MiB)")
	}
	return q.Value(), nil
}

func mib(b int64) string { return fmt.Sprintf("%dMiB", b>>20) }

func deref(p *int32) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func boolOr(a, b *bool) bool {
	if a != nil {
		return *a
	}
	return b != nil && *b
}

func int64Or(a, b *int64) int64 {
	if a != nil {
		return *a
	}
	if b != nil {
		return *b
	}
	return 0
}
