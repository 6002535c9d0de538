// Command imagebuild builds the otelcol-istio container image without a
// container daemon (`make image`): the Dockerfile's runtime stage (USER,
// EXPOSE, ENTRYPOINT, CMD) on an empty base, from the static binary. It
// writes a `docker save` archive and an OCI image layout of the same image.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/ociimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o          ociimage.Options
		dockerfile = flag.String("dockerfile", "Dockerfile", "Dockerfile whose last stage sets USER, EXPOSE, ENTRYPOINT and CMD")
		ref        = flag.String("image", "", "image name and tag, e.g. ghcr.io/otelcol-istio/otelcol-istio:0.1.0")
		tarOut     = flag.String("tar", "", "write a docker-load archive here")
		layoutOut  = flag.String("layout", "", "write an OCI image layout directory here")
		created    = flag.String("created", "", "image and file time, RFC 3339 (default: the Unix epoch)")
	)
	flag.StringVar(&o.Binary, "binary", "bin/otelcol-istio", "the static collector binary")
	flag.StringVar(&o.Config, "config", "distribution/config.yaml", "the default collector config")
	flag.StringVar(&o.CACerts, "ca-certs", "", "PEM CA bundle to ship as "+ociimage.CAFile+" (empty: none)")
	flag.StringVar(&o.Source, "source", "", "label "+ociimage.LabelSource)
	flag.StringVar(&o.Version, "version", "", "label "+ociimage.LabelVersion)
	flag.StringVar(&o.Revision, "revision", "", "label "+ociimage.LabelRevision)
	flag.Parse()
	if *ref == "" || (*tarOut == "" && *layoutOut == "") {
		return errors.New("-image and at least one of -tar, -layout are required")
	}
	o.Created = time.Unix(0, 0).UTC()
	if *created != "" {
		t, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			return fmt.Errorf("-created: %w", err)
		}
		o.Created = t.UTC()
	}
	var err error
	if o.Runtime, err = ociimage.ParseDockerfile(*dockerfile); err != nil {
		return err
	}
	img, err := ociimage.Build(o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if *tarOut != "" {
		err = ociimage.WriteTarball(img, *ref, *tarOut)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s: docker load -i %s\n", *ref, digest, *tarOut)
	}
	if *layoutOut != "" {
		err = ociimage.WriteLayout(img, *ref, *layoutOut)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s: OCI layout in %s\n", *ref, digest, *layoutOut)
	}
	return nil
}
