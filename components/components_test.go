package components

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/modfile"
)

// builderConfig is the part of the ocb manifest that lists components.
type builderConfig struct {
	Receivers  []builderModule `yaml:"receivers"`
	Processors []builderModule `yaml:"processors"`
	Exporters  []builderModule `yaml:"exporters"`
	Extensions []builderModule `yaml:"extensions"`
	Connectors []builderModule `yaml:"connectors"`
}

type builderModule struct {
	GoMod string `yaml:"gomod"`
}

func readBuilderModules(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../builder-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg builderConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("builder-config.yaml: %v", err)
	}
	var mods []string
	for _, group := range [][]builderModule{cfg.Receivers, cfg.Processors, cfg.Exporters, cfg.Extensions, cfg.Connectors} {
		for _, m := range group {
			mods = append(mods, m.GoMod)
		}
	}
	sort.Strings(mods)
	return mods
}

// factoryModules maps "kind/type" to "module version" for every factory. A
// deprecated alias (otlp for otlp_grpc) is registered under its own key but
// reports the current type, so it is left out.
func factoryModules(t *testing.T) map[string]string {
	t.Helper()
	f, err := Components()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for typ, mod := range f.ReceiverModules {
		if fac, ok := f.Receivers[typ]; ok && fac.Type() == typ {
			out["receiver/"+typ.String()] = mod
		}
	}
	for typ, mod := range f.ProcessorModules {
		if fac, ok := f.Processors[typ]; ok && fac.Type() == typ {
			out["processor/"+typ.String()] = mod
		}
	}
	for typ, mod := range f.ExporterModules {
		if fac, ok := f.Exporters[typ]; ok && fac.Type() == typ {
			out["exporter/"+typ.String()] = mod
		}
	}
	for typ, mod := range f.ExtensionModules {
		if fac, ok := f.Extensions[typ]; ok && fac.Type() == typ {
			out["extension/"+typ.String()] = mod
		}
	}
	for typ, mod := range f.ConnectorModules {
		if fac, ok := f.Connectors[typ]; ok && fac.Type() == typ {
			out["connector/"+typ.String()] = mod
		}
	}
	return out
}

// The generated factory list must hold exactly the modules of the manifest.
func TestComponentsMatchBuilderConfig(t *testing.T) {
	want := readBuilderModules(t)
	var got []string
	for _, mod := range factoryModules(t) {
		if !slices.Contains(got, mod) {
			got = append(got, mod)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("components.go is stale; run `make generate`.\nbuilder-config.yaml: %v\ncomponents.go:       %v", want, got)
	}
}

// components.go must be the ocb output with only the package and function
// renamed, so in-process tests run the same factories as the binary.
func TestComponentsGeneratedFromDistribution(t *testing.T) {
	dist, err := os.ReadFile("../distribution/components.go")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile("components.go")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(dist), "\npackage main\n", "\npackage components\n", 1)
	want = strings.Replace(want, "\nfunc components() ", "\n// Components returns the factories of every component in builder-config.yaml.\nfunc Components() ", 1)
	if want != string(ours) {
		t.Fatal("components/components.go differs from distribution/components.go; run `make generate`")
	}
}

// The root module builds components/ and e2e/ against the same module
// versions as the distribution, so tests exercise what ships.
func TestModuleVersionsMatchDistribution(t *testing.T) {
	parse := func(path string) map[string]string {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse(path, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range f.Require {
			out[r.Mod.Path] = r.Mod.Version
		}
		return out
	}
	dist := parse("../distribution/go.mod")
	root := parse("../go.mod")
	for mod, v := range root {
		if dv, ok := dist[mod]; ok && dv != v {
			t.Errorf("%s: go.mod has %s, distribution/go.mod has %s", mod, v, dv)
		}
	}
}

// The README's component table must list exactly what the binary holds.
func TestREADMEComponentTable(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (receiver|processor|exporter|extension|connector) \\| `([a-z_]+)` \\| `([^` ]+ [^`]+)` \\|")
	got := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		got[m[1]+"/"+m[2]] = m[3]
	}
	want := factoryModules(t)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("README component table: %s should list module `%s`, has %q", k, v, got[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("README component table lists %s, which is not in the distribution", k)
		}
	}
}
