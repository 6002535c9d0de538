// Package deploy holds the Kubernetes and Istio manifests of otelcol-istio.
// It has no code of its own: its tests decode every manifest strictly, render
// the kustomizations, run the collector's own `validate` on the configs they
// carry, and check that the pieces agree with each other (deploy/README.md).
package deploy
