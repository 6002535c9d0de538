package deploy

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/ociimage"
)

var (
	imageOnce sync.Once
	imageOut  string
	imageErr  error
)

// builtImage runs `make image` once (it rebuilds the binary when a source
// changed) and returns the repository root's path of its outputs.
func builtImage(t *testing.T) (tarPath, layoutPath string) {
	t.Helper()
	imageOnce.Do(func() {
		cmd := exec.Command("make", "--no-print-directory", "image")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		imageOut, imageErr = string(out), err
	})
	if imageErr != nil {
		t.Fatalf("make image: %v\n%s", imageErr, imageOut)
	}
	return filepath.Join(repoRoot, "bin", "otelcol-istio-image.tar"), filepath.Join(repoRoot, "bin", "otelcol-istio-oci")
}

// layerFiles reads the image's filesystem: headers and contents by path.
func layerFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	headers, contents := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		headers[p] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			contents[p] = b
		}
	}
	return headers, contents
}

// TestImage opens what `make image` wrote, as `docker load` and an OCI
// reader would, and checks it is the Dockerfile's runtime stage: same user,
// entrypoint, arguments and ports, the labels, the files, and a binary that
// runs and validates the shipped config.
func TestImage(t *testing.T) {
	tarPath, layoutPath := builtImage(t)
	makefile := string(readFile(t, filepath.Join(repoRoot, "Makefile")))
	ref := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindStringSubmatch(makefile)[1]

	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatalf("%s is not a docker-load archive: %v", tarPath, err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tarPath) })
	if err != nil || len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{ref}) {
		t.Errorf("archive manifest %+v (%v), want one image tagged %s", m, err, ref)
	}
	// An image is its config (which names the layers' digests): the archive
	// keeps the config verbatim, while its manifest is rebuilt on load.
	configDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}

	// The OCI layout holds the same image, under the same name.
	index, err := layout.ImageIndexFromPath(layoutPath)
	if err != nil {
		t.Fatalf("%s is not an OCI layout: %v", layoutPath, err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("OCI layout index %+v, want one manifest named %s", im.Manifests, ref)
	}
	layoutImg, err := index.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, nameErr := layoutImg.ConfigName(); nameErr != nil || got != configDigest {
		t.Errorf("OCI layout image config %s (%v), archive's %s", got, nameErr, configDigest)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := ociimage.ParseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "10001:10001" || c.User != rt.User {
		t.Errorf("user %q, want 10001:10001 as the Dockerfile's USER %q", c.User, rt.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/otelcol-istio"}) || !slices.Equal(c.Entrypoint, rt.Entrypoint) {
		t.Errorf("entrypoint %q, want the Dockerfile's %q", c.Entrypoint, rt.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"--config=/etc/otelcol-istio/config.yaml"}) || !slices.Equal(c.Cmd, rt.Cmd) {
		t.Errorf("cmd %q, want the Dockerfile's %q", c.Cmd, rt.Cmd)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []string{"13133/tcp", "4317/tcp", "4318/tcp"}) {
		t.Errorf("exposed ports %v, want 4317, 4318 and 13133", ports)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	wantLabels := map[string]*regexp.Regexp{
		ociimage.LabelSource:   regexp.MustCompile(`^https://github\.com/otelcol-istio/otelcol-istio$`),
		ociimage.LabelVersion:  regexp.MustCompile(`^` + regexp.QuoteMeta(ref[strings.LastIndex(ref, ":")+1:]) + `$`),
		ociimage.LabelRevision: regexp.MustCompile(`^[0-9a-f]{40}(-dirty)?$`),
	}
	for k, re := range wantLabels {
		if !re.MatchString(c.Labels[k]) {
			t.Errorf("label %s=%q, want %s", k, c.Labels[k], re)
		}
	}
	// The Dockerfile's LABELs name the same keys.
	dockerfile := string(readFile(t, filepath.Join(repoRoot, "Dockerfile")))
	for k := range wantLabels {
		if !strings.Contains(dockerfile, k+"=") {
			t.Errorf("the Dockerfile sets no LABEL %s", k)
		}
	}

	headers, contents := layerFiles(t, img)
	for p, want := range map[string]struct {
		mode     int64
		uid, gid int
	}{
		"/otelcol-istio":                 {0o755, 0, 0},
		"/etc/otelcol-istio/config.yaml": {0o644, 0, 0},
		ociimage.QueueDir:                {0o755, 10001, 10001},
		"/tmp":                           {0o1777, 0, 0},
		"/etc/passwd":                    {0o644, 0, 0},
	} {
		h, ok := headers[p]
		if !ok {
			t.Errorf("no %s in the image", p)
			continue
		}
		if h.Mode&0o7777 != want.mode || h.Uid != want.uid || h.Gid != want.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", p, h.Mode, h.Uid, h.Gid, want.mode, want.uid, want.gid)
		}
	}
	if !bytes.Contains(contents["/etc/passwd"], []byte(":x:10001:10001:")) {
		t.Errorf("/etc/passwd has no entry for 10001:\n%s", contents["/etc/passwd"])
	}
	if !bytes.Equal(contents["/etc/otelcol-istio/config.yaml"], readFile(t, filepath.Join(repoRoot, "distribution", "config.yaml"))) {
		t.Error("/etc/otelcol-istio/config.yaml is not distribution/config.yaml")
	}
	if _, statErr := os.Stat("/etc/ssl/certs/ca-certificates.crt"); statErr == nil && len(contents[ociimage.CAFile]) == 0 {
		t.Errorf("the build machine has a CA bundle but the image has no %s", ociimage.CAFile)
	}
	if slices.Contains(c.Env, "SSL_CERT_FILE="+ociimage.CAFile) != (len(contents[ociimage.CAFile]) > 0) {
		t.Errorf("env %v does not match the presence of %s", c.Env, ociimage.CAFile)
	}

	// The binary from the layer runs, and validates the config shipped beside it.
	dir := t.TempDir()
	bin, cfg := filepath.Join(dir, "otelcol-istio"), filepath.Join(dir, "config.yaml")
	if err = os.WriteFile(bin, contents["/otelcol-istio"], 0o700); err != nil {
		t.Fatal(err)
	}
	if err = os.WriteFile(cfg, contents["/etc/otelcol-istio/config.yaml"], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "otelcol-istio") {
		t.Errorf("--version: %v\n%s", err, out)
	}
	// The environment `make validate` uses.
	cmd := exec.Command(bin, "validate", "--config="+cfg)
	cmd.Env = append(os.Environ(), "OTLP_BACKEND_ENDPOINT=backend.example:4317", "OTLP_BACKEND_TOKEN=validate-only")
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Errorf("validate the image's config: %v\n%s", err, out)
	}
}

// TestImageReproducible: the same inputs give the same image digest, so a
// rebuild can be checked against a pushed image.
func TestImageReproducible(t *testing.T) {
	tarPath, _ := builtImage(t)
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "again.tar")
	cmd := exec.Command("make", "--no-print-directory", "image", "IMAGE_TAR="+again, "IMAGE_LAYOUT="+t.TempDir()+"/oci")
	cmd.Dir = repoRoot
	if out, buildErr := cmd.CombinedOutput(); buildErr != nil {
		t.Fatalf("make image: %v\n%s", buildErr, out)
	}
	img2, err := tarball.ImageFromPath(again, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := img2.Digest(); err != nil || got != want {
		t.Errorf("second build %s (%v), first %s", got, err, want)
	}
}
