package deploy_test

// Small, strict readers for the files in this directory and the Dockerfile. Docker,
// compose and ECS are not available where the tests run, so the tests read the files
// themselves. Each reader knows the subset of its format that the files use and
// rejects anything else with the line it is on, so that an edit the reader would
// misread fails loudly instead of passing unchecked.

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line  int
	cmd   string // upper case: FROM, RUN, ...
	flags []dfFlag
	args  string // what follows the instruction and its flags
}

type dfFlag struct{ name, value string }

// flag returns the values of every --name flag, in order.
func (in instruction) flag(name string) []string {
	var v []string
	for _, f := range in.flags {
		if f.name == name {
			v = append(v, f.value)
		}
	}
	return v
}

// execForm returns the JSON array of an exec-form instruction (["a", "b"]); ok is
// false for the shell form. Docker, too, reads an argument that is not a valid JSON
// array of strings as the shell form.
func execForm(args string) (argv []string, ok bool) {
	s := strings.TrimSpace(args)
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		return nil, false
	}
	return argv, true
}

// flagged lists the instructions that take --name=value flags before their arguments.
var flagged = map[string]bool{"FROM": true, "RUN": true, "COPY": true, "ADD": true, "HEALTHCHECK": true}

var knownInstructions = map[string]bool{
	"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true,
	"ADD": true, "COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true,
	"WORKDIR": true, "ARG": true, "ONBUILD": true, "STOPSIGNAL": true,
	"HEALTHCHECK": true, "SHELL": true,
}

// parseDockerfile reads a Dockerfile with the default escape character. Comment lines
// (parser directives among them) are dropped wherever they are, as Docker drops them
// inside continued instructions too. Heredocs and another escape character are
// refused.
func parseDockerfile(data string) ([]instruction, error) {
	var (
		out   []instruction
		cur   strings.Builder
		start int
	)
	for i, raw := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		n := i + 1
		t := strings.TrimSpace(raw)
		if strings.HasPrefix(t, "#") {
			if d, ok := strings.CutPrefix(strings.ReplaceAll(t, " ", ""), "#escape="); ok && len(out) == 0 && cur.Len() == 0 && d != `\` {
				return nil, fmt.Errorf("line %d: escape directive %q is not supported by this reader", n, t)
			}
			continue
		}
		if t == "" {
			if cur.Len() > 0 {
				return nil, fmt.Errorf("line %d: empty line inside a continued instruction", n)
			}
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(t, `\`); ok {
			cur.WriteString(body)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(t)
		in, err := parseInstruction(start, cur.String())
		if err != nil {
			return nil, err
		}
		out = append(out, in)
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: the file ends inside a continued instruction", start)
	}
	return out, nil
}

func parseInstruction(line int, text string) (instruction, error) {
	word, rest, _ := strings.Cut(text, " ")
	in := instruction{line: line, cmd: strings.ToUpper(word)}
	if !knownInstructions[in.cmd] {
		return in, fmt.Errorf("line %d: unknown instruction %q", line, word)
	}
	rest = strings.TrimSpace(rest)
	for flagged[in.cmd] && strings.HasPrefix(rest, "--") {
		var f string
		f, rest, _ = strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
		name, value, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		in.flags = append(in.flags, dfFlag{name, value})
	}
	if strings.Contains(rest, "<<") && (in.cmd == "RUN" || in.cmd == "COPY" || in.cmd == "ADD") {
		return in, fmt.Errorf("line %d: heredocs are not supported by this reader", line)
	}
	in.args = rest
	return in, nil
}

// shellCommand is one simple command of a shell line: its leading NAME=value
// assignments and its words.
type shellCommand struct {
	env  map[string]string
	argv []string
}

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// shellCommands splits a shell line such as a RUN instruction's into simple commands,
// as sh would for the plain commands a Dockerfile uses: blanks separate words, '...'
// and "..." quote, \ escapes, $NAME, ${NAME} and ${NAME:-default} expand from vars
// (unset: empty), and ; && || | end a command. Command substitution, backquotes and
// subshells are refused rather than misread; redirections stay words.
func shellCommands(line string, vars map[string]string) ([]shellCommand, error) {
	var (
		cmds  []shellCommand
		words []string
		word  strings.Builder
		inW   bool // a word is open (it may be empty: "")
	)
	endWord := func() {
		if inW {
			words = append(words, word.String())
		}
		word.Reset()
		inW = false
	}
	endCmd := func() {
		endWord()
		if len(words) == 0 {
			return
		}
		c := shellCommand{env: map[string]string{}}
		i := 0
		for ; i < len(words); i++ {
			name, value, ok := strings.Cut(words[i], "=")
			if !ok || !shellName.MatchString(name) {
				break
			}
			c.env[name] = value
		}
		c.argv = words[i:]
		cmds = append(cmds, c)
		words = nil
	}
	expand := func(s string, i int) (int, error) {
		// s[i] == '$'
		if i+1 < len(s) && s[i+1] == '(' {
			return 0, fmt.Errorf("command substitution is not supported: %q", s)
		}
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return 0, fmt.Errorf("unterminated ${ in %q", s)
			}
			expr := s[i+2 : i+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			v, set := vars[name]
			if (!set || v == "") && hasDef {
				v = def
			}
			word.WriteString(v)
			inW = true
			return i + end + 1, nil
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i+1 {
			word.WriteByte('$')
			inW = true
			return j, nil
		}
		word.WriteString(vars[s[i+1:j]])
		inW = true
		return j, nil
	}
	s := line
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			endWord()
			i++
		case c == ';' || c == '|' || c == '&':
			if c == '&' && (i+1 >= len(s) || s[i+1] != '&') {
				return nil, fmt.Errorf("background commands are not supported: %q", s)
			}
			endCmd()
			i++
			if i < len(s) && (s[i] == '&' || s[i] == '|') {
				i++
			}
		case c == '`' || c == '(' || c == ')':
			return nil, fmt.Errorf("%q is not supported: %q", c, s)
		case c == '\\':
			if i+1 < len(s) {
				word.WriteByte(s[i+1])
			}
			inW = true
			i += 2
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			word.WriteString(s[i+1 : i+1+end])
			inW = true
			i += end + 2
		case c == '"':
			inW = true
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf(`unterminated " in %q`, s)
				}
				if s[i] == '"' {
					i++
					break
				}
				switch s[i] {
				case '\\':
					if i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
						word.WriteByte(s[i+1])
						i += 2
					} else {
						word.WriteByte('\\')
						i++
					}
				case '`':
					return nil, fmt.Errorf("backquotes are not supported: %q", s)
				case '$':
					var err error
					if i, err = expand(s, i); err != nil {
						return nil, err
					}
				default:
					word.WriteByte(s[i])
					i++
				}
			}
		case c == '$':
			var err error
			if i, err = expand(s, i); err != nil {
				return nil, err
			}
		default:
			word.WriteByte(c)
			inW = true
			i++
		}
	}
	endCmd()
	return cmds, nil
}

// ---------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------

// ignorePattern is one line of a .dockerignore, compiled as Docker's
// moby/patternmatcher compiles it.
type ignorePattern struct {
	text      string
	exclusion bool // a "!" line: let back in
	re        *regexp.Regexp
}

// parseDockerignore reads a .dockerignore as Docker's ignorefile.ReadAll does:
// '#' lines are comments, lines are trimmed, "!" marks an exception, paths are
// cleaned and taken relative to the context.
func parseDockerignore(data string) ([]ignorePattern, error) {
	var out []ignorePattern
	for i, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		p := strings.TrimSpace(line)
		if p == "" {
			continue
		}
		var ip ignorePattern
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			ip.exclusion = true
			p = strings.TrimSpace(rest)
		}
		p = path.Clean(p)
		if len(p) > 1 && p[0] == '/' {
			p = p[1:]
		}
		re, err := ignoreRegexp(p)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore:%d: %v", i+1, err)
		}
		ip.text, ip.re = p, re
		out = append(out, ip)
	}
	return out, nil
}

func ignoreRegexp(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			i++
			if i+1 < len(p) && p[i+1] == '/' {
				i++
			}
			if i+1 >= len(p) {
				b.WriteString(".*")
			} else {
				b.WriteString("(.*/)?")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(string(p[i])))
			}
		case c == '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("pattern %q: unterminated [", p)
			}
			b.WriteString(p[i : i+end+1])
			i += end
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// ignored reports whether the context path rel (slash-separated) is left out of the
// build context, as Docker's MatchesOrParentMatches decides: the last pattern that
// matches the path or one of its parent directories wins.
func ignored(patterns []ignorePattern, rel string) bool {
	var parents []string
	dirs := strings.Split(rel, "/")
	for i := 1; i < len(dirs); i++ {
		parents = append(parents, strings.Join(dirs[:i], "/"))
	}
	matched := false
	for _, p := range patterns {
		if p.exclusion != matched {
			continue
		}
		m := p.re.MatchString(rel)
		for _, d := range parents {
			if m {
				break
			}
			m = p.re.MatchString(d)
		}
		if m {
			matched = !p.exclusion
		}
	}
	return matched
}

// ---------------------------------------------------------------------------
// YAML, the subset docker-compose.yml is written in
// ---------------------------------------------------------------------------

// yamlNode is a mapping, a sequence or a scalar of the YAML subset: block mappings
// with plain keys, block sequences of scalars, flow sequences of scalars, plain,
// single- and double-quoted scalars, and comments. Anchors, aliases, tags, block
// scalars, flow mappings, multi-document files, sequences of mappings and tabs are
// refused.
type yamlNode struct {
	line   int
	kind   byte // 'm' mapping, 's' sequence, 'v' scalar
	keys   []string
	fields map[string]*yamlNode
	items  []*yamlNode
	value  string
}

// get follows a path of mapping keys; nil when a key is missing or a node on the way
// is not a mapping.
func (n *yamlNode) get(path ...string) *yamlNode {
	for _, k := range path {
		if n == nil || n.kind != 'm' {
			return nil
		}
		n = n.fields[k]
	}
	return n
}

// strings returns a sequence's scalars, or a scalar as a sequence of one.
func (n *yamlNode) strings() []string {
	if n == nil {
		return nil
	}
	if n.kind == 'v' {
		return []string{n.value}
	}
	var out []string
	for _, it := range n.items {
		out = append(out, it.value)
	}
	return out
}

type yamlLine struct {
	n      int
	indent int
	text   string
}

func parseYAML(data string) (*yamlNode, error) {
	var lines []yamlLine
	for i, raw := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		n := i + 1
		body := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(body)
		if strings.HasPrefix(body, "\t") || strings.Contains(raw[:indent], "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n)
		}
		text, err := stripYAMLComment(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		text = strings.TrimRight(text, " \t")
		if text == "" {
			continue
		}
		if text == "---" || text == "..." || strings.HasPrefix(text, "%") {
			return nil, fmt.Errorf("line %d: documents and directives are not supported", n)
		}
		lines = append(lines, yamlLine{n, indent, text})
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("empty document")
	}
	if lines[0].indent != 0 {
		return nil, fmt.Errorf("line %d: the document must start at column 1", lines[0].n)
	}
	node, next, err := parseYAMLBlock(lines, 0, 0)
	if err != nil {
		return nil, err
	}
	if next != len(lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", lines[next].n)
	}
	return node, nil
}

// stripYAMLComment removes a comment: '#' at the start or after a blank, outside quotes.
func stripYAMLComment(s string) (string, error) {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && c == '#' && (i == 0 || s[i-1] == ' '):
			return s[:i], nil
		}
	}
	if q != 0 {
		return "", fmt.Errorf("unterminated quote")
	}
	return s, nil
}

var yamlKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func parseYAMLBlock(lines []yamlLine, i, indent int) (*yamlNode, int, error) {
	first := lines[i]
	if first.text == "-" || strings.HasPrefix(first.text, "- ") {
		seq := &yamlNode{line: first.n, kind: 's'}
		for i < len(lines) && lines[i].indent == indent {
			l := lines[i]
			rest, ok := strings.CutPrefix(l.text, "- ")
			if !ok {
				return nil, 0, fmt.Errorf("line %d: expected a list item", l.n)
			}
			rest = strings.TrimSpace(rest)
			if _, _, isMap := cutYAMLKey(rest); isMap || rest == "-" || strings.HasPrefix(rest, "- ") || strings.HasPrefix(rest, "[") {
				return nil, 0, fmt.Errorf("line %d: only scalars are supported as list items", l.n)
			}
			v, err := yamlScalar(rest, l.n)
			if err != nil {
				return nil, 0, err
			}
			seq.items = append(seq.items, v)
			i++
		}
		if i < len(lines) && lines[i].indent > indent {
			return nil, 0, fmt.Errorf("line %d: unexpected indentation", lines[i].n)
		}
		return seq, i, nil
	}
	m := &yamlNode{line: first.n, kind: 'm', fields: map[string]*yamlNode{}}
	for i < len(lines) && lines[i].indent == indent {
		l := lines[i]
		key, rest, ok := cutYAMLKey(l.text)
		if !ok {
			return nil, 0, fmt.Errorf("line %d: expected key: value", l.n)
		}
		if !yamlKey.MatchString(key) {
			return nil, 0, fmt.Errorf("line %d: key %q: only plain keys are supported", l.n, key)
		}
		if _, dup := m.fields[key]; dup {
			return nil, 0, fmt.Errorf("line %d: duplicate key %q", l.n, key)
		}
		var v *yamlNode
		if rest == "" {
			if i+1 >= len(lines) || lines[i+1].indent <= indent {
				return nil, 0, fmt.Errorf("line %d: key %q has no value", l.n, key)
			}
			var err error
			v, i, err = parseYAMLBlock(lines, i+1, lines[i+1].indent)
			if err != nil {
				return nil, 0, err
			}
		} else {
			var err error
			if strings.HasPrefix(rest, "[") {
				v, err = yamlFlowSeq(rest, l.n)
			} else {
				v, err = yamlScalar(rest, l.n)
			}
			if err != nil {
				return nil, 0, err
			}
			i++
			if i < len(lines) && lines[i].indent > indent {
				return nil, 0, fmt.Errorf("line %d: unexpected indentation", lines[i].n)
			}
		}
		m.keys = append(m.keys, key)
		m.fields[key] = v
	}
	return m, i, nil
}

// cutYAMLKey splits "key: value" or "key:"; ok is false when s is not a mapping entry.
func cutYAMLKey(s string) (key, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "'") {
		return "", "", false
	}
	if k, ok := strings.CutSuffix(s, ":"); ok && !strings.Contains(k, ": ") {
		return k, "", true
	}
	k, r, ok := strings.Cut(s, ": ")
	if !ok {
		return "", "", false
	}
	return k, strings.TrimSpace(r), true
}

func yamlScalar(s string, line int) (*yamlNode, error) {
	n := &yamlNode{line: line, kind: 'v'}
	switch {
	case strings.HasPrefix(s, `"`):
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] != '\\' {
				b.WriteByte(s[i])
				continue
			}
			i++
			if i >= len(s) {
				break
			}
			switch s[i] {
			case '"', '\\', '/':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				return nil, fmt.Errorf("line %d: escape \\%c is not supported", line, s[i])
			}
		}
		if i != len(s)-1 {
			return nil, fmt.Errorf("line %d: text after a quoted scalar, or no closing quote: %s", line, s)
		}
		n.value = b.String()
	case strings.HasPrefix(s, "'"):
		body := s[1:]
		end := -1
		for i := 0; i < len(body); i++ {
			if body[i] == '\'' {
				if i+1 < len(body) && body[i+1] == '\'' {
					i++
					continue
				}
				end = i
				break
			}
		}
		if end != len(body)-1 {
			return nil, fmt.Errorf("line %d: text after a quoted scalar, or no closing quote: %s", line, s)
		}
		n.value = strings.ReplaceAll(body[:end], "''", "'")
	default:
		if strings.ContainsAny(s[:1], "&*!|>{}[]%@`,?") {
			return nil, fmt.Errorf("line %d: %q: anchors, aliases, tags, block scalars and flow mappings are not supported", line, s)
		}
		if strings.Contains(s, ": ") || strings.Contains(s, " #") {
			return nil, fmt.Errorf("line %d: %q: quote this scalar", line, s)
		}
		n.value = s
	}
	return n, nil
}

func yamlFlowSeq(s string, line int) (*yamlNode, error) {
	if !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("line %d: a flow list must end the line with ]", line)
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	seq := &yamlNode{line: line, kind: 's'}
	if body == "" {
		return seq, nil
	}
	var (
		items []string
		q     byte
		start int
	)
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '[' || c == '{' || c == ']' || c == '}'):
			return nil, fmt.Errorf("line %d: nested flow collections are not supported", line)
		case q == 0 && c == ',':
			items = append(items, body[start:i])
			start = i + 1
		}
	}
	items = append(items, body[start:])
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			return nil, fmt.Errorf("line %d: empty item in a flow list", line)
		}
		v, err := yamlScalar(it, line)
		if err != nil {
			return nil, err
		}
		seq.items = append(seq.items, v)
	}
	return seq, nil
}

// ---------------------------------------------------------------------------
// nginx.conf
// ---------------------------------------------------------------------------

// ngxDirective is one nginx directive; block is non-nil for a block directive.
type ngxDirective struct {
	line  int
	name  string
	args  []string
	block []*ngxDirective
}

// find returns the directives named name among ds.
func ngxFind(ds []*ngxDirective, name string) []*ngxDirective {
	var out []*ngxDirective
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

type ngxToken struct {
	line  int
	text  string
	quote bool // a quoted string: never a ; { or }
}

func ngxTokens(data string) ([]ngxToken, error) {
	var (
		toks []ngxToken
		line = 1
	)
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, ngxToken{line: line, text: string(c)})
			i++
		case c == '"' || c == '\'':
			start := line
			var b strings.Builder
			i++
			for {
				if i >= len(data) {
					return nil, fmt.Errorf("line %d: unterminated quote", start)
				}
				if data[i] == c {
					i++
					break
				}
				if data[i] == '\\' && i+1 < len(data) && (data[i+1] == c || data[i+1] == '\\') {
					i++
				}
				if data[i] == '\n' {
					line++
				}
				b.WriteByte(data[i])
				i++
			}
			toks = append(toks, ngxToken{line: start, text: b.String(), quote: true})
		default:
			start := i
			for i < len(data) && !strings.ContainsRune(" \t\r\n;{}\"'", rune(data[i])) {
				if data[i] == '#' && i > start {
					// nginx reads '#' inside a word as part of it; nothing here needs it.
					return nil, fmt.Errorf("line %d: '#' inside a word", line)
				}
				i++
			}
			toks = append(toks, ngxToken{line: line, text: data[start:i]})
		}
	}
	return toks, nil
}

func parseNginx(data string) ([]*ngxDirective, error) {
	toks, err := ngxTokens(data)
	if err != nil {
		return nil, err
	}
	ds, rest, err := ngxBlock(toks, false)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("line %d: unexpected %q", rest[0].line, rest[0].text)
	}
	return ds, nil
}

func ngxBlock(toks []ngxToken, inner bool) ([]*ngxDirective, []ngxToken, error) {
	var ds []*ngxDirective
	for len(toks) > 0 {
		t := toks[0]
		if !t.quote && t.text == "}" {
			if !inner {
				return nil, nil, fmt.Errorf("line %d: unexpected }", t.line)
			}
			return ds, toks[1:], nil
		}
		if !t.quote && (t.text == ";" || t.text == "{") {
			return nil, nil, fmt.Errorf("line %d: unexpected %q", t.line, t.text)
		}
		d := &ngxDirective{line: t.line, name: t.text}
		toks = toks[1:]
		for {
			if len(toks) == 0 {
				return nil, nil, fmt.Errorf("line %d: directive %q is not terminated", d.line, d.name)
			}
			a := toks[0]
			toks = toks[1:]
			if !a.quote && a.text == ";" {
				break
			}
			if !a.quote && a.text == "{" {
				var err error
				d.block, toks, err = ngxBlock(toks, true)
				if err != nil {
					return nil, nil, err
				}
				if d.block == nil {
					d.block = []*ngxDirective{}
				}
				break
			}
			if !a.quote && a.text == "}" {
				return nil, nil, fmt.Errorf("line %d: unexpected }", a.line)
			}
			d.args = append(d.args, a.text)
		}
		ds = append(ds, d)
	}
	if inner {
		return nil, nil, fmt.Errorf("unexpected end of file: a block is not closed")
	}
	return ds, nil, nil
}

// formatNginx writes directives back as nginx configuration text.
func formatNginx(b *strings.Builder, ds []*ngxDirective, depth int) {
	for _, d := range ds {
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString(d.name)
		for _, a := range d.args {
			b.WriteByte(' ')
			if a == "" || strings.ContainsAny(a, " \t\n;{}\"'#\\") {
				b.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`)
			} else {
				b.WriteString(a)
			}
		}
		if d.block != nil {
			b.WriteString(" {\n")
			formatNginx(b, d.block, depth+1)
			b.WriteString(strings.Repeat("    ", depth) + "}\n")
		} else {
			b.WriteString(";\n")
		}
	}
}
