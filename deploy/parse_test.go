package deploy_test

// Reading the files in this directory and the Dockerfile with the libraries Docker,
// compose and nginx users rely on: BuildKit's Dockerfile parser and instruction
// reader, Docker's .dockerignore matcher, a YAML decoder, an nginx configuration
// parser, and a POSIX shell parser for the commands the image runs. Docker, compose
// and ECS are not available where the tests run, so the tests read the files
// themselves; nginx -t and the image tests run what they can for real.

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	ngxconf "github.com/tufanbarisyildirim/gonginx/config"
	nginxparser "github.com/tufanbarisyildirim/gonginx/parser"
	"go.yaml.in/yaml/v3"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

// dfStage is a build stage as BuildKit reads it, every instruction's words expanded
// ($NAME, ${NAME:-default}) as the builder expands them.
type dfStage struct {
	instructions.Stage
	args   []string                              // the names of the stage's ARGs
	runEnv map[*instructions.RunCommand][]string // what each RUN's shell starts with
}

// parseDockerfile reads a Dockerfile as BuildKit does, with buildArgs as the
// --build-arg values (and the platform ARGs BuildKit sets itself). Parser warnings and
// the build checks BuildKit runs while reading (docker build --check) are errors.
func parseDockerfile(data string, buildArgs map[string]string) ([]dfStage, error) {
	res, err := parser.Parse(strings.NewReader(data))
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, w := range res.Warnings {
		problems = append(problems, fmt.Sprintf("line %d: %s", w.Location.Start.Line, w.Short))
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		if len(loc) > 0 {
			msg = fmt.Sprintf("line %d: %s", loc[0].Start.Line, msg)
		}
		problems = append(problems, rule+": "+msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}

	lex := shell.NewLex(res.EscapeToken)
	// ARGs before the first FROM: defaults for the stages' ARGs of the same name.
	global := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				global[kv.Key] = v
			} else if kv.Value != nil {
				global[kv.Key] = *kv.Value
			}
		}
	}
	var out []dfStage
	for _, st := range stages {
		s := dfStage{Stage: st, runEnv: map[*instructions.RunCommand][]string{}}
		var env []string // NAME=value, later ones win
		expander := func(word string) (string, error) {
			v, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(env))
			return v, err
		}
		for _, cmd := range st.Commands {
			if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
				if err := ex.Expand(expander); err != nil {
					return nil, fmt.Errorf("line %d: %v", line(cmd), err)
				}
			}
			switch c := cmd.(type) {
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					s.args = append(s.args, kv.Key)
					v, given := buildArgs[kv.Key]
					if !given && kv.Value != nil {
						v, given = *kv.Value, true
					}
					if !given {
						v, given = global[kv.Key]
					}
					if given {
						env = append(env, kv.Key+"="+v)
					}
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					env = append(env, kv.Key+"="+kv.Value)
				}
			case *instructions.RunCommand:
				s.runEnv[c] = append([]string(nil), env...)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// line is where cmd starts in the Dockerfile.
func line(cmd instructions.Command) int { return cmd.Location()[0].Start.Line }

// runCommands returns the simple commands a RUN runs: its shell script as BuildKit
// hands it to /bin/sh (heredocs included), or its exec form as one command.
func (s dfStage) runCommands(run *instructions.RunCommand) ([]shellCommand, error) {
	if !run.PrependShell {
		return []shellCommand{{env: map[string]string{}, argv: run.CmdLine}}, nil
	}
	script := strings.Join(run.CmdLine, " ")
	if len(run.Files) > 0 {
		if parser.MustParseHeredoc(script) != nil {
			// RUN <<EOF: the heredoc is the script.
			script = run.Files[0].Data
			if run.Files[0].Chomp {
				script = parser.ChompHeredocContent(script)
			}
			if strings.HasPrefix(script, "#!") {
				return nil, fmt.Errorf("line %d: a heredoc with its own interpreter is not read by this test", line(run))
			}
		} else {
			for _, f := range run.Files {
				script += "\n" + f.Data + f.Name
			}
		}
	}
	cmds, err := shellCommands(script, s.runEnv[run])
	if err != nil {
		return nil, fmt.Errorf("line %d: %v", line(run), err)
	}
	return cmds, nil
}

// ---------------------------------------------------------------------------
// Shell
// ---------------------------------------------------------------------------

// shellCommand is one simple command of a shell script: its leading NAME=value
// assignments and its words, expanded as sh expands them.
type shellCommand struct {
	env  map[string]string
	argv []string
}

// shellCommands parses a POSIX shell script and returns its simple commands in order,
// expanded with env (NAME=value) and the variables the script itself assigns. A
// command substitution is an error: the test cannot know its output.
func shellCommands(script string, env []string) ([]shellCommand, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, err
	}
	vars := append([]string(nil), env...)
	var (
		cmds  []shellCommand
		first error
	)
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || first != nil {
			return first == nil
		}
		cfg := &expand.Config{Env: expand.ListEnviron(vars...)}
		c := shellCommand{env: map[string]string{}}
		for _, a := range call.Assigns {
			v, err := expand.Literal(cfg, a.Value)
			if err != nil {
				first = err
				return false
			}
			c.env[a.Name.Value] = v
		}
		if c.argv, err = expand.Fields(cfg, call.Args...); err != nil {
			first = err
			return false
		}
		if len(call.Args) == 0 { // NAME=value alone sets a shell variable
			for k, v := range c.env {
				vars = append(vars, k+"="+v)
			}
			return true
		}
		cmds = append(cmds, c)
		return true
	})
	return cmds, first
}

// ---------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------

// parseDockerignore reads a .dockerignore as Docker does.
func parseDockerignore(data string) (*patternmatcher.PatternMatcher, error) {
	patterns, err := ignorefile.ReadAll(strings.NewReader(data))
	if err != nil {
		return nil, err
	}
	return patternmatcher.New(patterns)
}

// ignored reports whether the context path rel (slash-separated) is left out of the
// build context. (New has checked every pattern, so matching cannot fail; if it did,
// the path would count as left out and the build test would miss it.)
func ignored(pm *patternmatcher.PatternMatcher, rel string) bool {
	m, err := pm.MatchesOrParentMatches(rel)
	return err != nil || m
}

// skipDir reports whether the walk of the build context can skip directory rel, as
// Docker's context archiver decides: it is ignored, and no exception ("!" pattern)
// names a path under it.
func skipDir(pm *patternmatcher.PatternMatcher, rel string) bool {
	if !ignored(pm, rel) {
		return false
	}
	for _, p := range pm.Patterns() {
		if p.Exclusion() && strings.HasPrefix(p.String()+"/", rel+"/") {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------

// composeFile holds the part of the compose specification the file uses. It is
// decoded with unknown keys refused, so that a key the tests do not know (or a typo
// of one) fails instead of passing unchecked.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Deploy *struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Command       []string          `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	ContainerName string            `yaml:"container_name"`
	Ports         []string          `yaml:"ports"`
	Expose        []string          `yaml:"expose"`
	Volumes       []string          `yaml:"volumes"`
	ReadOnly      bool              `yaml:"read_only"`
	DependsOn     map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Restart         string `yaml:"restart"`
}

func parseCompose(data string) (composeFile, error) {
	var f composeFile
	dec := yaml.NewDecoder(strings.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, err
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return f, errors.New("more than one YAML document")
	}
	return f, nil
}

// ---------------------------------------------------------------------------
// nginx.conf
// ---------------------------------------------------------------------------

func parseNginx(data string) ([]ngxconf.IDirective, error) {
	conf, err := nginxparser.NewStringParser(data, nginxparser.WithSkipComments()).Parse()
	if err != nil {
		return nil, err
	}
	return conf.GetDirectives(), nil
}

// ngxFind returns the directives named name among ds.
func ngxFind(ds []ngxconf.IDirective, name string) []ngxconf.IDirective {
	var out []ngxconf.IDirective
	for _, d := range ds {
		if d.GetName() == name {
			out = append(out, d)
		}
	}
	return out
}

// ngxBlock returns the directives inside d's block (nil for a simple directive).
func ngxBlock(d ngxconf.IDirective) []ngxconf.IDirective {
	if b := d.GetBlock(); b != nil {
		return b.GetDirectives()
	}
	return nil
}

// ngxArgs returns d's arguments as nginx reads them: quotes removed, \" \' \\ \t \r
// and \n unescaped.
func ngxArgs(d ngxconf.IDirective) []string {
	unescape := strings.NewReplacer(`\"`, `"`, `\'`, `'`, `\\`, `\`, `\t`, "\t", `\r`, "\r", `\n`, "\n")
	var out []string
	for _, p := range d.GetParameters() {
		v := p.Value
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, unescape.Replace(v))
	}
	return out
}
