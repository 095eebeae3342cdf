package detect

import "strings"

// shellCmd is one simple command of a shell script: its words after quote
// removal, its redirections and the command substitutions ($(...), `...`,
// <(...)) found in its words, which run before it.
type shellCmd struct {
	args   []string
	redirs []shellRedir
	subs   []string
}

type shellRedir struct {
	op, target string
}

// shellScript is a parsed script: pipelines in order, each a list of
// commands connected by pipes. Separators (; && || & newline) only split
// pipelines: what runs is what matters, not whether it runs.
type shellScript [][]shellCmd

// maxScript bounds the length of a script parsed, so that a hostile
// command line cannot make classification slow.
const maxScript = 16 << 10

// parseShell splits a POSIX-shell-like script into pipelines of commands.
// It understands quotes, backslashes, comments, the control operators and
// redirections, and keeps the text of command substitutions for the caller
// to parse in turn. It never fails: unbalanced quotes end at the end of the
// input, as a shell that reads more lines would see them.
func parseShell(s string) shellScript {
	if len(s) > maxScript {
		s = s[:maxScript]
	}
	p := shellParser{src: s}
	p.run()
	return p.script
}

type shellParser struct {
	src    string
	i      int
	script shellScript
	pipe   []shellCmd
	cmd    shellCmd
	word   strings.Builder
	inWord bool
	// redir is the pending redirection operator whose target is the next
	// word.
	redir string
}

func (p *shellParser) run() {
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '\\':
			p.inWord = true
			if p.i+1 < len(p.src) {
				if p.src[p.i+1] != '\n' {
					p.word.WriteByte(p.src[p.i+1])
				}
				p.i += 2
			} else {
				p.i++
			}
		case c == '\'':
			p.inWord = true
			end := strings.IndexByte(p.src[p.i+1:], '\'')
			if end < 0 {
				p.word.WriteString(p.src[p.i+1:])
				p.i = len(p.src)
			} else {
				p.word.WriteString(p.src[p.i+1 : p.i+1+end])
				p.i += end + 2
			}
		case c == '"':
			p.inWord = true
			p.doubleQuoted()
		case c == '`':
			p.inWord = true
			end := strings.IndexByte(p.src[p.i+1:], '`')
			inner := p.src[p.i+1:]
			if end >= 0 {
				inner = p.src[p.i+1 : p.i+1+end]
				p.i += end + 2
			} else {
				p.i = len(p.src)
			}
			p.cmd.subs = append(p.cmd.subs, inner)
			p.word.WriteString("`" + inner + "`")
		case c == '$' && p.peek(1) == '(':
			p.inWord = true
			p.substitution(2, "$(")
		case (c == '<' || c == '>') && p.peek(1) == '(':
			// Process substitution: <(curl ...) runs the inner command.
			p.endWord()
			p.inWord = true
			p.substitution(2, string(c)+"(")
			p.endWord()
		case c == '#' && !p.inWord:
			for p.i < len(p.src) && p.src[p.i] != '\n' {
				p.i++
			}
		case c == ' ' || c == '\t':
			p.endWord()
			p.i++
		case c == '\n' || c == ';':
			p.endPipeline()
			p.i++
		case c == '|':
			p.endWord()
			if p.peek(1) == '|' {
				p.endPipeline()
				p.i += 2
				continue
			}
			p.endCommand()
			p.i++
			if p.peek(0) == '&' { // |&
				p.i++
			}
		case c == '&':
			switch {
			case p.peek(1) == '&':
				p.endPipeline()
				p.i += 2
			case p.peek(1) == '>':
				p.endWord()
				p.startRedir(2)
			default:
				p.endPipeline()
				p.i++
			}
		case c == '<' || c == '>':
			// A word of digits right before the operator is its file
			// descriptor (2>, 0<&196), not an argument.
			if p.inWord && isDigits(p.word.String()) {
				p.word.Reset()
				p.inWord = false
			}
			p.endWord()
			p.startRedir(1)
		default:
			p.inWord = true
			p.word.WriteByte(c)
			p.i++
		}
	}
	p.endPipeline()
}

func (p *shellParser) peek(n int) byte {
	if p.i+n < len(p.src) {
		return p.src[p.i+n]
	}
	return 0
}

// startRedir reads a redirection operator that starts n bytes before its
// variable part (> >> >& <& <> &> &>>) and makes the next word its target.
func (p *shellParser) startRedir(n int) {
	start := p.i
	p.i += n
	for p.i < len(p.src) && strings.IndexByte("<>&|", p.src[p.i]) >= 0 {
		p.i++
	}
	p.redir = p.src[start:p.i]
}

// doubleQuoted reads a "..." string: backslash escapes and command
// substitutions stay active inside it.
func (p *shellParser) doubleQuoted() {
	p.i++
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			return
		case c == '\\' && p.i+1 < len(p.src):
			p.word.WriteByte(p.src[p.i+1])
			p.i += 2
		case c == '$' && p.peek(1) == '(':
			p.substitution(2, "$(")
		case c == '`':
			end := strings.IndexByte(p.src[p.i+1:], '`')
			inner := p.src[p.i+1:]
			if end >= 0 {
				inner = p.src[p.i+1 : p.i+1+end]
				p.i += end + 2
			} else {
				p.i = len(p.src)
			}
			p.cmd.subs = append(p.cmd.subs, inner)
			p.word.WriteString("`" + inner + "`")
		default:
			p.word.WriteByte(c)
			p.i++
		}
	}
}

// substitution reads a parenthesised substitution starting at p.i, whose
// opening is n bytes long, records its inner text and keeps it in the word.
func (p *shellParser) substitution(n int, open string) {
	start := p.i + n
	depth, j := 1, start
	for ; j < len(p.src) && depth > 0; j++ {
		switch p.src[j] {
		case '(':
			depth++
		case ')':
			depth--
		}
	}
	end := j
	if depth == 0 {
		end = j - 1
	}
	inner := p.src[start:end]
	p.cmd.subs = append(p.cmd.subs, inner)
	p.word.WriteString(open + inner + ")")
	p.i = j
}

func (p *shellParser) endWord() {
	if !p.inWord {
		return
	}
	w := p.word.String()
	p.word.Reset()
	p.inWord = false
	if p.redir != "" {
		p.cmd.redirs = append(p.cmd.redirs, shellRedir{op: p.redir, target: w})
		p.redir = ""
		return
	}
	p.cmd.args = append(p.cmd.args, w)
}

func (p *shellParser) endCommand() {
	p.endWord()
	if p.redir != "" {
		p.cmd.redirs = append(p.cmd.redirs, shellRedir{op: p.redir})
		p.redir = ""
	}
	if len(p.cmd.args) > 0 || len(p.cmd.redirs) > 0 || len(p.cmd.subs) > 0 {
		p.pipe = append(p.pipe, p.cmd)
	}
	p.cmd = shellCmd{}
}

func (p *shellParser) endPipeline() {
	p.endCommand()
	if len(p.pipe) > 0 {
		p.script = append(p.script, p.pipe)
	}
	p.pipe = nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
