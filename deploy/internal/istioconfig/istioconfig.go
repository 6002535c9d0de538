// Package istioconfig decodes the Istio objects under deploy/istio strictly:
// the Kubernetes envelope with unknown fields rejected, and the Istio payloads
// (MeshConfig, Telemetry) through protojson against istio.io/api, also with
// unknown fields rejected.
package istioconfig

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetryv1 "istio.io/api/telemetry/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// strict rejects unknown fields; it accepts both the proto names
// (resource_detectors) and their JSON names (resourceDetectors), as Istio does.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

// IstioOperator is the part of install.istio.io/v1alpha1 IstioOperator these
// files use. Anything else in spec is an error: istio.io/api does not carry
// the IstioOperator type, so the envelope admits only what we checked.
type IstioOperator struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Profile    string          `json:"profile,omitempty"`
		MeshConfig json.RawMessage `json:"meshConfig"`
	} `json:"spec"`

	Mesh *meshv1alpha1.MeshConfig `json:"-"`
}

// HelmValues is the istiod chart's values as far as these files use them.
type HelmValues struct {
	MeshConfig json.RawMessage `json:"meshConfig"`

	Mesh *meshv1alpha1.MeshConfig `json:"-"`
}

// Telemetry is a telemetry.istio.io/v1 Telemetry.
type Telemetry struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	SpecJSON   json.RawMessage   `json:"spec"`

	Spec *telemetryv1.Telemetry `json:"-"`
}

func decodeEnvelope(doc []byte, into any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	// Case-sensitive, unlike encoding/json: "meshconfig" is not "meshConfig".
	strictErrs, err := sigsjson.UnmarshalStrict(j, into, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func decodeProto(raw json.RawMessage, what string, m proto.Message) error {
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("%s is missing", what)
	}
	if err := strict.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// DecodeIstioOperator decodes an IstioOperator strictly.
func DecodeIstioOperator(doc []byte) (*IstioOperator, error) {
	var io IstioOperator
	if err := decodeEnvelope(doc, &io); err != nil {
		return nil, fmt.Errorf("IstioOperator: %w", err)
	}
	if io.APIVersion != "install.istio.io/v1alpha1" || io.Kind != "IstioOperator" {
		return nil, fmt.Errorf("want install.istio.io/v1alpha1 IstioOperator, got %s %s", io.APIVersion, io.Kind)
	}
	io.Mesh = &meshv1alpha1.MeshConfig{}
	if err := decodeProto(io.Spec.MeshConfig, "spec.meshConfig", io.Mesh); err != nil {
		return nil, err
	}
	return &io, nil
}

// DecodeHelmValues decodes istiod Helm values strictly.
func DecodeHelmValues(doc []byte) (*HelmValues, error) {
	var v HelmValues
	if err := decodeEnvelope(doc, &v); err != nil {
		return nil, fmt.Errorf("helm values: %w", err)
	}
	v.Mesh = &meshv1alpha1.MeshConfig{}
	if err := decodeProto(v.MeshConfig, "meshConfig", v.Mesh); err != nil {
		return nil, err
	}
	return &v, nil
}

// DecodeTelemetry decodes a Telemetry resource strictly.
func DecodeTelemetry(doc []byte) (*Telemetry, error) {
	var t Telemetry
	if err := decodeEnvelope(doc, &t); err != nil {
		return nil, fmt.Errorf("Telemetry: %w", err)
	}
	if t.APIVersion != "telemetry.istio.io/v1" || t.Kind != "Telemetry" {
		return nil, fmt.Errorf("want telemetry.istio.io/v1 Telemetry, got %s %s", t.APIVersion, t.Kind)
	}
	t.Spec = &telemetryv1.Telemetry{}
	if err := decodeProto(t.SpecJSON, "spec", t.Spec); err != nil {
		return nil, err
	}
	return &t, nil
}

// OpenTelemetryProviders returns the mesh's opentelemetry extension providers by name.
func OpenTelemetryProviders(m *meshv1alpha1.MeshConfig) map[string]*meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider {
	out := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider{}
	for _, p := range m.GetExtensionProviders() {
		if otel := p.GetOpentelemetry(); otel != nil {
			out[p.GetName()] = otel
		}
	}
	return out
}
