// Package ociimage builds the collector's container image without a
// container daemon: the Dockerfile's runtime stage, as one OCI image layer on
// an empty base, from the static binary `make build` made. `make image` runs
// it through deploy/cmd/imagebuild.
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths in the image, as the Dockerfile writes them.
const (
	QueueDir = "/var/lib/otelcol-istio/queue"
	CAFile   = "/etc/ssl/certs/ca-certificates.crt"
	// uid and gid of the runtime user; the Dockerfile's USER must name them.
	uid, gid = 10001, 10001
)

// OCI label keys (the annotation keys of the image spec).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
)

// Options says what goes into the image.
type Options struct {
	// Binary is the static collector, put at the ENTRYPOINT's path.
	Binary string
	// Config is the default collector config, put at the path of CMD's
	// --config=.
	Config string
	// Runtime comes from the Dockerfile (ParseDockerfile).
	Runtime Runtime
	// CACerts is a PEM bundle for CAFile; empty leaves it out (the exporter
	// then has no system roots: TLS to a public CA fails).
	CACerts string
	// Labels: source URL, version and VCS revision.
	Source, Version, Revision string
	// Created stamps the image and every file, so the same inputs give the
	// same digest (make uses the commit time).
	Created time.Time
}

// Build assembles the image: one layer with the filesystem below, and the
// config the Dockerfile's runtime stage sets.
func Build(o Options) (v1.Image, error) {
	arch, err := goArch(o.Binary)
	if err != nil {
		return nil, err
	}
	binPath := o.Runtime.Entrypoint[0]
	cfgPath := configPath(o.Runtime.Cmd)
	if cfgPath == "" {
		return nil, fmt.Errorf("CMD %q has no --config=PATH for the default config", o.Runtime.Cmd)
	}
	if want := fmt.Sprintf("%d:%d", uid, gid); o.Runtime.User != want {
		return nil, fmt.Errorf("USER %q: this builder writes /etc/passwd and the queue directory for %s", o.Runtime.User, want)
	}

	fs := newTree(o.Created)
	err = fs.addFile(binPath, o.Binary, 0o755)
	if err != nil {
		return nil, err
	}
	err = fs.addFile(cfgPath, o.Config, 0o644)
	if err != nil {
		return nil, err
	}
	if o.CACerts != "" {
		err = fs.addFile(CAFile, o.CACerts, 0o644)
		if err != nil {
			return nil, err
		}
	}
	// What distroless gives that a static Go binary uses: a passwd entry for
	// the runtime user (os/user, and tools that show the name), and /tmp.
	fs.addData("/etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
		fmt.Sprintf("otelcol-istio:x:%d:%d:otelcol-istio:/var/lib/otelcol-istio:/sbin/nologin\n", uid, gid))
	fs.addData("/etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n"+fmt.Sprintf("otelcol-istio:x:%d:\n", gid))
	fs.addDir("/tmp", 0o1777, 0, 0)
	// The persistent queue, owned by the runtime user as the Dockerfile has it.
	fs.addDir(QueueDir, 0o755, uid, gid)

	layerTar, err := fs.bytes()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}

	ports := map[string]struct{}{}
	for _, p := range o.Runtime.ExposedPorts {
		ports[p] = struct{}{}
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if o.CACerts != "" {
		env = append(env, "SSL_CERT_FILE="+CAFile)
	}
	created := v1.Time{Time: o.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			User:         o.Runtime.User,
			Entrypoint:   o.Runtime.Entrypoint,
			Cmd:          o.Runtime.Cmd,
			ExposedPorts: ports,
			Env:          env,
			WorkingDir:   "/",
			Labels: map[string]string{
				LabelSource:   o.Source,
				LabelVersion:  o.Version,
				LabelRevision: o.Revision,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "deploy/cmd/imagebuild", Comment: "otelcol-istio binary, default config, passwd, CA certificates, /tmp, queue directory"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, created)
}

// WriteTarball writes img, tagged ref, as a `docker save` archive: what
// `docker load`, `podman load` and `crane push` read.
func WriteTarball(img v1.Image, ref, file string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(file, tag, img)
}

// WriteLayout writes img into a fresh OCI image layout directory, with ref as
// its org.opencontainers.image.ref.name (what `podman load`, skopeo and
// `crane push` read).
func WriteLayout(img v1.Image, ref, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

// configPath is PATH of CMD's --config=PATH.
func configPath(cmd []string) string {
	for _, a := range cmd {
		if p, ok := strings.CutPrefix(a, "--config="); ok {
			return p
		}
	}
	return ""
}

// goArch is the image platform's architecture, read from the binary.
func goArch(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("binary %s: %w", binary, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	default:
		return "", fmt.Errorf("binary %s: machine %v is not amd64 or arm64", binary, f.Machine)
	}
}

// tree is the layer's files, written in order, parents first.
type tree struct {
	modTime time.Time
	dirs    map[string]bool
	buf     bytes.Buffer
	tw      *tar.Writer
	err     error
}

func newTree(modTime time.Time) *tree {
	t := &tree{modTime: modTime, dirs: map[string]bool{"/": true}}
	t.tw = tar.NewWriter(&t.buf)
	return t
}

// addDir adds dir and its missing parents (root-owned, 0755).
func (t *tree) addDir(dir string, mode int64, owner, group int) {
	if t.dirs[dir] {
		return
	}
	t.addDir(path.Dir(dir), 0o755, 0, 0)
	t.dirs[dir] = true
	t.write(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: mode, Uid: owner, Gid: group}, nil)
}

func (t *tree) addData(file string, mode int64, data string) {
	t.addDir(path.Dir(file), 0o755, 0, 0)
	t.write(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(file, "/"), Mode: mode, Size: int64(len(data))}, []byte(data))
}

func (t *tree) addFile(file, src string, mode int64) error {
	data, err := os.ReadFile(src) //nolint:gosec // the input files the caller names
	if err != nil {
		return err
	}
	t.addDir(path.Dir(file), 0o755, 0, 0)
	t.write(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(file, "/"), Mode: mode, Size: int64(len(data))}, data)
	return nil
}

func (t *tree) write(h *tar.Header, data []byte) {
	if t.err != nil {
		return
	}
	h.ModTime, h.Format = t.modTime, tar.FormatPAX
	if t.err = t.tw.WriteHeader(h); t.err == nil && data != nil {
		_, t.err = t.tw.Write(data)
	}
}

func (t *tree) bytes() ([]byte, error) {
	if err := errors.Join(t.err, t.tw.Close()); err != nil {
		return nil, err
	}
	return t.buf.Bytes(), nil
}
