package deploy

import (
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/otelcol-istio/otelcol-istio/deploy/internal/manifest"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/ociimage"
	"github.com/otelcol-istio/otelcol-istio/deploy/internal/policy"
)

// dockerfile is the parsed Dockerfile: instructions by stage.
type dockerfile struct {
	stages [][]string // each instruction with its continuation lines joined
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	stages, err := ociimage.Stages(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return dockerfile{stages: stages}
}

var goBuild = regexp.MustCompile(`CGO_ENABLED=0 (?:go|\$\(GO\)) build (.*) -o \S+ \.`)

// TestDockerfileBuildsLikeMake: the image's build is `make build`'s, static
// and trimmed, so CI's `make build` proves the image's binary builds.
func TestDockerfileBuildsLikeMake(t *testing.T) {
	d := parseDockerfile(t)
	if len(d.stages) != 2 {
		t.Fatalf("want a two-stage build, got %d stages", len(d.stages))
	}
	var dockerFlags string
	for _, inst := range d.stages[0] {
		if m := goBuild.FindStringSubmatch(inst); m != nil {
			dockerFlags = m[1]
			if !strings.Contains(inst, "cd distribution &&") {
				t.Errorf("the Dockerfile must build in distribution/, as make does: %s", inst)
			}
		}
	}
	makefile := string(readFile(t, filepath.Join(repoRoot, "Makefile")))
	m := goBuild.FindStringSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile: no CGO_ENABLED=0 go build line")
	}
	if dockerFlags == "" || dockerFlags != m[1] {
		t.Errorf("Dockerfile builds with %q, make build with %q: they must match", dockerFlags, m[1])
	}
	if !strings.Contains(m[1], "-trimpath") {
		t.Errorf("build flags %q lack -trimpath", m[1])
	}
}

// TestDockerfileRuntimeStage: distroless or scratch, user 10001 as the pods
// run, the Service and health ports exposed.
func TestDockerfileRuntimeStage(t *testing.T) {
	final := parseDockerfile(t).stages[1]
	from := strings.Fields(final[0])[1]
	if from != "scratch" && !strings.HasPrefix(from, "gcr.io/distroless/static") {
		t.Errorf("runtime stage is %s, want scratch or distroless static", from)
	}
	var user string
	var exposed []int32
	for _, inst := range final {
		f := strings.Fields(inst)
		switch f[0] {
		case "USER":
			user = f[1]
		case "EXPOSE":
			for _, p := range f[1:] {
				n, err := strconv.ParseInt(strings.TrimSuffix(p, "/tcp"), 10, 32)
				if err != nil {
					t.Fatal(err)
				}
				exposed = append(exposed, int32(n))
			}
		case "COPY":
			src := f[len(f)-2]
			if !slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, "--from=") }) {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid != strconv.Itoa(policy.RunAsUser) {
		t.Errorf("USER %q, want %d (runAsUser in the manifests)", user, policy.RunAsUser)
	}
	objs := render(t, "kubernetes/base")
	var want []int32
	for _, svc := range manifest.Of[*corev1.Service](objs) {
		if svc.Name == "otelcol-istio" {
			want = append(want, policy.ServicePorts(svc)...)
		}
	}
	for _, p := range collectorWorkload(t, objs).Container().Ports {
		if p.Name == "health" {
			want = append(want, p.ContainerPort)
		}
	}
	slices.Sort(want)
	slices.Sort(exposed)
	if !slices.Equal(want, exposed) {
		t.Errorf("EXPOSE %v, want the Service ports and the health port %v", exposed, want)
	}
}

// TestImageNameMatchesMakefile: the base deploys the image `make image` tags.
func TestImageNameMatchesMakefile(t *testing.T) {
	m := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindStringSubmatch(string(readFile(t, filepath.Join(repoRoot, "Makefile"))))
	if m == nil {
		t.Fatal("Makefile: no IMAGE ?= line")
	}
	for _, dir := range []string{"kubernetes/base", "kubernetes/overlays/http", "kubernetes/overlays/production"} {
		if got := collectorWorkload(t, render(t, dir)).Container().Image; got != m[1] {
			t.Errorf("%s deploys %s, make image builds %s", dir, got, m[1])
		}
	}
}

// TestBinaryIsStatic: the binary `make build` (and the Dockerfile) produce has
// no dynamic loader and no shared libraries, so it runs on distroless/scratch.
func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(collectorBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}
