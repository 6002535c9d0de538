package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	deployPath = regexp.MustCompile(`deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]`)
	makeTarget = regexp.MustCompile("(?m)(?:^|`)make ([a-z][a-z-]*)")
	applyK     = regexp.MustCompile(`apply -k (\S+)`)
)

// TestREADMECommandsMatchFiles: every deploy/... path and make target the
// READMEs mention exists, and every `kubectl apply -k` names a kustomization.
func TestREADMECommandsMatchFiles(t *testing.T) {
	makefile := string(readFile(t, filepath.Join(repoRoot, "Makefile")))
	for _, readme := range []string{"README.md", "istio/README.md"} {
		text := string(readFile(t, readme))
		n := 0
		for _, p := range deployPath.FindAllString(text, -1) {
			n++
			if _, err := os.Stat(filepath.Join(repoRoot, p)); err != nil {
				t.Errorf("%s mentions %s, which does not exist", readme, p)
			}
		}
		if n < 5 {
			t.Errorf("%s: only %d deploy/ paths found; is the pattern still right?", readme, n)
		}
		for _, m := range makeTarget.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(makefile, "\n"+m[1]+":") {
				t.Errorf("%s mentions `make %s`, which the Makefile does not have", readme, m[1])
			}
		}
		for _, m := range applyK.FindAllStringSubmatch(text, -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, m[1], "kustomization.yaml")); err != nil {
				t.Errorf("%s: `kubectl apply -k %s` names no kustomization", readme, m[1])
			}
		}
	}
}
