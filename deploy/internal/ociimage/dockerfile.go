package ociimage

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Runtime is what the Dockerfile's last (runtime) stage sets for the
// container: the daemonless build reads it from there, so the two builds
// cannot drift apart.
type Runtime struct {
	User         string
	Entrypoint   []string
	Cmd          []string
	ExposedPorts []string // as the OCI config keys them: "4317/tcp"
}

// ParseDockerfile reads USER, EXPOSE, ENTRYPOINT and CMD (exec form) from
// the last stage of the Dockerfile at path.
func ParseDockerfile(path string) (Runtime, error) {
	stages, err := Stages(path)
	if err != nil {
		return Runtime{}, err
	}
	if len(stages) == 0 {
		return Runtime{}, fmt.Errorf("%s: no FROM", path)
	}
	insts := stages[len(stages)-1]
	var rt Runtime
	for _, inst := range insts {
		keyword, args, _ := strings.Cut(inst, " ")
		args = strings.TrimSpace(args)
		switch keyword {
		case "USER":
			rt.User = args
		case "EXPOSE":
			for _, p := range strings.Fields(args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				rt.ExposedPorts = append(rt.ExposedPorts, p)
			}
		case "ENTRYPOINT":
			if rt.Entrypoint, err = execForm(keyword, args); err != nil {
				return Runtime{}, err
			}
		case "CMD":
			if rt.Cmd, err = execForm(keyword, args); err != nil {
				return Runtime{}, err
			}
		}
	}
	if rt.User == "" || len(rt.Entrypoint) == 0 {
		return Runtime{}, fmt.Errorf("%s: the last stage needs USER and ENTRYPOINT", path)
	}
	return rt, nil
}

// execForm parses ["a", "b"]: the shell form would need a shell, which the
// image does not have.
func execForm(keyword, args string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, errors.Join(fmt.Errorf("%s %s: want the exec form [\"...\"]", keyword, args), err)
	}
	return out, nil
}

// Stages reads the Dockerfile at path: its instructions by stage, comments
// and blank lines left out, continuation lines joined.
func Stages(path string) ([][]string, error) {
	f, err := os.Open(path) //nolint:gosec // the Dockerfile the caller names
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var stages [][]string
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		inst := cur + line
		cur = ""
		if strings.HasPrefix(inst, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("%s: %q before FROM", path, inst)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], inst)
	}
	return stages, sc.Err()
}
