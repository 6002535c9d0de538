package ociimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeDockerfile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Only the last stage counts, continuation lines join, and EXPOSE gets /tcp.
func TestParseDockerfile(t *testing.T) {
	rt, err := ParseDockerfile(writeDockerfile(t, `FROM golang AS build
USER 0
ENTRYPOINT ["/wrong"]
FROM scratch
# a comment
USER 10001:10001
EXPOSE 4317 \
  4318/tcp 13133
ENTRYPOINT ["/otelcol-istio"]
CMD ["--config=/etc/otelcol-istio/config.yaml"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if rt.User != "10001:10001" || !slices.Equal(rt.Entrypoint, []string{"/otelcol-istio"}) ||
		!slices.Equal(rt.Cmd, []string{"--config=/etc/otelcol-istio/config.yaml"}) ||
		!slices.Equal(rt.ExposedPorts, []string{"4317/tcp", "4318/tcp", "13133/tcp"}) {
		t.Errorf("parsed %+v", rt)
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"shell form": {"FROM scratch\nUSER 1\nENTRYPOINT /otelcol-istio --config=x\n", "want the exec form"},
		"no user":    {"FROM scratch\nENTRYPOINT [\"/otelcol-istio\"]\n", "needs USER and ENTRYPOINT"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDockerfile(writeDockerfile(t, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// The builder writes passwd and the queue directory for 10001 only, so
// another USER is refused rather than shipped inconsistent.
func TestBuildRefusesOtherUser(t *testing.T) {
	exe, err := os.Executable() // any ELF binary of this machine
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(Options{Binary: exe, Config: exe, Runtime: Runtime{
		User: "65532:65532", Entrypoint: []string{"/otelcol-istio"}, Cmd: []string{"--config=/etc/c.yaml"},
	}})
	if err == nil || !strings.Contains(err.Error(), "10001:10001") {
		t.Errorf("error %v, want one naming 10001:10001", err)
	}
}
