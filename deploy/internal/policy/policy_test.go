package policy

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseGoMemLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"700MiB":     700 << 20,
		"1GiB":       1 << 30,
		"1073741824": 1 << 30,
		"512KiB":     512 << 10,
		"100B":       100,
	} {
		got, err := parseGoMemLimit(in)
		if err != nil || got != want {
			t.Errorf("parseGoMemLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// Kubernetes quantities are not Go memory limits: the runtime would ignore them.
	for _, bad := range []string{"700Mi", "1G", "lots", ""} {
		if _, err := parseGoMemLimit(bad); err == nil {
			t.Errorf("parseGoMemLimit(%q): want an error", bad)
		}
	}
}
