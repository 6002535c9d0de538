// Package manifest renders the kustomizations under deploy/kubernetes and
// decodes Kubernetes objects strictly into the k8s.io/api types, so an unknown
// or misspelled field is an error instead of being dropped on the floor.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one decoded Kubernetes object.
type Object struct {
	GVK schema.GroupVersionKind
	Obj runtime.Object
}

// Name returns "Kind/name" for messages.
func (o Object) Name() string {
	type named interface{ GetName() string }
	if n, ok := o.Obj.(named); ok {
		return o.GVK.Kind + "/" + n.GetName()
	}
	return o.GVK.Kind
}

var (
	scheme  = runtime.NewScheme()
	decoder *json.Serializer
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	// Strict: unknown fields and duplicate fields are errors.
	decoder = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

// DecodeStrict decodes one YAML document into its k8s.io/api type. A kind the
// scheme does not know, an unknown field or a duplicate field is an error.
func DecodeStrict(doc []byte) (runtime.Object, *schema.GroupVersionKind, error) {
	obj, gvk, err := decoder.Decode(doc, nil, nil)
	if err != nil {
		return nil, gvk, err
	}
	return obj, gvk, nil
}

// SplitDocuments splits a multi-document YAML stream, dropping empty documents.
func SplitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// DecodeAll strictly decodes every document of a YAML stream.
func DecodeAll(source string, data []byte) ([]Object, error) {
	docs, err := SplitDocuments(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var objs []Object
	var errs []error
	for i, doc := range docs {
		obj, gvk, err := DecodeStrict(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", source, i+1, err))
			continue
		}
		objs = append(objs, Object{GVK: *gvk, Obj: obj})
	}
	return objs, errors.Join(errs...)
}

// DecodeFile strictly decodes every document of a YAML file.
func DecodeFile(path string) ([]Object, error) {
	data, err := os.ReadFile(path) //nolint:gosec // reading the file the caller names is this function's job
	if err != nil {
		return nil, err
	}
	return DecodeAll(path, data)
}

// Render runs kustomize (the Go library, no kubectl) on a kustomization
// directory, with the default restriction that files stay inside it.
func Render(dir string) ([]byte, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	k := krusty.MakeKustomizer(opts)
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return resMap.AsYaml()
}

// RenderAndDecode renders a kustomization and strictly decodes its output.
func RenderAndDecode(dir string) ([]Object, error) {
	out, err := Render(dir)
	if err != nil {
		return nil, err
	}
	return DecodeAll(dir, out)
}

// Of returns the objects of type T.
func Of[T runtime.Object](objs []Object) []T {
	var out []T
	for _, o := range objs {
		if t, ok := o.Obj.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
