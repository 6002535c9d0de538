package orphans

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden runs every fixture through a detector with the default config
// and compares the whole output with testdata/golden/<fixture>.
func TestGolden(t *testing.T) {
	for _, fx := range []string{fxPropagated, fxNoPropagate, fxForwardsXRID, fxSpawn, fxLegacy} {
		t.Run(strings.TrimSuffix(fx, ".json"), func(t *testing.T) {
			d, _ := newTestDetector(t, DefaultConfig())
			td := readTraces(t, fx)
			d.Process(td)
			golden := filepath.Join("golden", fx)
			if *update {
				writeGolden(t, golden, td)
			}
			want := readTraces(t, golden)
			require.NoError(t, ptracetest.CompareTraces(want, td))
		})
	}
}

func writeGolden(t *testing.T, path string, td ptrace.Traces) {
	t.Helper()
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, json.Indent(&out, b, "", "  "))
	out.WriteByte('\n')
	full := filepath.Join("testdata", path)
	require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
	require.NoError(t, os.WriteFile(full, out.Bytes(), 0o644))
	t.Logf("wrote %s", full)
}
