// Package policy holds the rules the collector's Kubernetes manifests must
// keep: availability (replicas, rollout, probes), hardening, memory settings
// consistent with the limit, the queue on a volume, no credentials in
// ConfigMaps, and agreement between the manifests and the collector config.
// Every rule returns Findings naming the rule, the object and what is wrong,
// so a test can show that a reintroduced mistake is caught.
package policy

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Finding is one broken rule.
type Finding struct {
	Rule    string // short stable id, e.g. "replicas"
	Object  string // Kind/name
	Message string
}

func (f Finding) Error() string { return fmt.Sprintf("%s: [%s] %s", f.Object, f.Rule, f.Message) }

// Findings is a list of broken rules.
type Findings []Finding

func (fs *Findings) add(rule, object, format string, args ...any) {
	*fs = append(*fs, Finding{Rule: rule, Object: object, Message: fmt.Sprintf(format, args...)})
}

// Has reports whether a rule was broken.
func (fs Findings) Has(rule string) bool {
	for _, f := range fs {
		if f.Rule == rule {
			return true
		}
	}
	return false
}

// Workload is a Deployment or StatefulSet running the collector.
type Workload struct {
	Kind, Name  string
	Replicas    *int32
	Template    corev1.PodTemplateSpec
	Deployment  *appsv1.Deployment
	StatefulSet *appsv1.StatefulSet
}

// ID returns "Kind/name".
func (w Workload) ID() string { return w.Kind + "/" + w.Name }

// Workloads picks the Deployments and StatefulSets out of objs.
func Workloads(objs []runtime.Object) []Workload {
	var out []Workload
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			out = append(out, Workload{Kind: "Deployment", Name: v.Name, Replicas: v.Spec.Replicas, Template: v.Spec.Template, Deployment: v})
		case *appsv1.StatefulSet:
			out = append(out, Workload{Kind: "StatefulSet", Name: v.Name, Replicas: v.Spec.Replicas, Template: v.Spec.Template, StatefulSet: v})
		}
	}
	return out
}

// Container returns the workload's first container (the collector).
func (w Workload) Container() *corev1.Container {
	if len(w.Template.Spec.Containers) == 0 {
		return nil
	}
	return &w.Template.Spec.Containers[0]
}

// ConfigPath returns the --config argument of the collector container.
func (w Workload) ConfigPath() string {
	c := w.Container()
	if c == nil {
		return ""
	}
	args := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// CollectorConfig finds the ConfigMap data the collector's --config points at,
// through the volume mounted over its directory.
func (w Workload) CollectorConfig(configMaps []*corev1.ConfigMap) (cmName, key, text string, err error) {
	cfgPath := w.ConfigPath()
	c := w.Container()
	if cfgPath == "" || c == nil {
		return "", "", "", fmt.Errorf("%s: no --config argument", w.ID())
	}
	dir, file := path.Split(cfgPath)
	for _, m := range c.VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/")+"/" != dir {
			continue
		}
		for _, v := range w.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			key := file
			for _, item := range v.ConfigMap.Items {
				if item.Path == file {
					key = item.Key
				}
			}
			for _, cm := range configMaps {
				if cm.Name == v.ConfigMap.Name {
					data, ok := cm.Data[key]
					if !ok {
						return "", "", "", fmt.Errorf("%s: ConfigMap %s has no key %s", w.ID(), cm.Name, key)
					}
					return cm.Name, key, data, nil
				}
			}
			return "", "", "", fmt.Errorf("%s: ConfigMap %s not found", w.ID(), v.ConfigMap.Name)
		}
	}
	return "", "", "", fmt.Errorf("%s: no ConfigMap volume mounted at %s", w.ID(), dir)
}

// Env returns the environment the collector container would see. Values from
// the downward API and Secrets are stand-ins (podIP 10.0.0.10, secrets
// "<secret:name/key>"); envFrom ConfigMaps are read from configMaps.
func (w Workload) Env(configMaps []*corev1.ConfigMap) map[string]string {
	env := map[string]string{}
	c := w.Container()
	if c == nil {
		return env
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		for _, cm := range configMaps {
			if cm.Name == from.ConfigMapRef.Name {
				for k, v := range cm.Data {
					env[from.Prefix+k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.0.0.10"
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = fmt.Sprintf("<secret:%s/%s>", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		default:
			env[e.Name] = "<valueFrom>"
		}
	}
	return env
}
