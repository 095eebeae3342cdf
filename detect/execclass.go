package detect

import "strings"

// Exec command classes, from the most to the least severe. ExecClass
// returns the most severe class found anywhere in a command.
const (
	ExecReverseShell     = "reverse-shell"
	ExecDownloadRun      = "download-exec"
	ExecContainerEscape  = "container-escape"
	ExecCredentialAccess = "credential-access"
	ExecCloudMetadata    = "cloud-metadata"
	ExecToolDrop         = "tool-drop"
	ExecPackageInstall   = "package-install"
	ExecCopyOut          = "copy-out"
	ExecReconScript      = "recon-script"
	ExecRecon            = "recon"
	ExecShell            = "interactive-shell"
)

// execRank orders the classes: a higher rank wins.
var execRank = map[string]int{
	"": 0, ExecShell: 1, ExecRecon: 2, ExecReconScript: 3, ExecCopyOut: 4, ExecPackageInstall: 5,
	ExecToolDrop: 6, ExecCloudMetadata: 7, ExecCredentialAccess: 8, ExecContainerEscape: 9,
	ExecDownloadRun: 10, ExecReverseShell: 11,
}

// ExecClass classifies the command of an exec request (its argv, as the
// command= parameters give it) or a container's command and args. Shell
// scripts (sh -c '...'), interpreter one-liners (python -c, perl -e) and
// command substitutions are read, not substring-matched; "" means nothing
// of note.
func ExecClass(argv []string) string {
	c := classifier{}
	c.argv(argv, 0)
	return c.result()
}

// ExecClassString classifies a command line written as one shell string.
func ExecClassString(s string) string {
	c := classifier{}
	c.script(s, 0)
	return c.result()
}

// result is the class found; three reconnaissance commands in one command
// line outrank one.
func (c *classifier) result() string {
	if (c.class == "" || c.class == ExecRecon) && c.recon >= 3 {
		return ExecReconScript
	}
	return c.class
}

type classifier struct {
	class string
	// recon counts distinct reconnaissance commands.
	recon     int
	reconSeen map[string]bool
	// fetched records that the script downloaded something, to see the
	// download made executable or run later in it.
	fetched bool
}

func (c *classifier) found(class string) {
	if execRank[class] > execRank[c.class] {
		c.class = class
	}
}

// maxDepth bounds nesting: sh -c "bash -c '...'" and substitutions.
const maxDepth = 5

func (c *classifier) script(s string, depth int) {
	if depth > maxDepth {
		return
	}
	for _, pipe := range parseShell(s) {
		c.pipeline(pipe, depth)
	}
}

func (c *classifier) argv(args []string, depth int) {
	if len(args) == 0 {
		return
	}
	c.pipeline([]shellCmd{{args: args}}, depth)
}

// shells read a script from -c or from standard input.
var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "ash": true, "zsh": true, "ksh": true,
	"mksh": true, "csh": true, "tcsh": true, "fish": true, "busybox-sh": true}

// interpreters run code given with -c / -e / -r or read from standard input.
var interpreters = map[string]bool{"python": true, "python2": true, "python3": true, "perl": true, "ruby": true,
	"php": true, "node": true, "nodejs": true, "lua": true, "pwsh": true, "powershell": true}

var fetchers = map[string]bool{"curl": true, "wget": true, "fetch": true, "aria2c": true, "lwp-download": true}

var netcats = map[string]bool{"nc": true, "ncat": true, "netcat": true, "nc.traditional": true, "nc.openbsd": true, "pnc": true}

// wrappers run the command that follows their options.
var wrappers = map[string]bool{"exec": true, "nohup": true, "env": true, "sudo": true, "nice": true, "setsid": true,
	"command": true, "timeout": true, "stdbuf": true, "ionice": true, "chrt": true, "time": true, "xargs": true, "doas": true}

func (c *classifier) pipeline(pipe []shellCmd, depth int) {
	var sawNet, sawShell, sawFetch, sawDecode bool
	for i, cmd := range pipe {
		for _, sub := range cmd.subs {
			c.script(sub, depth+1)
		}
		args := unwrap(cmd.args)
		name := ""
		if len(args) > 0 {
			name = base(args[0])
		}
		// A later stage that is a shell or interpreter reading standard
		// input runs what the earlier stages produce.
		runsInput := (shells[name] || interpreters[name]) && !hasScriptArg(name, args)
		if i > 0 && runsInput {
			switch {
			case sawNet:
				c.found(ExecReverseShell)
			case sawFetch, sawDecode:
				c.found(ExecDownloadRun)
			}
		}
		if runsInput && i < len(pipe)-1 && pipeHasNet(pipe[i+1:]) {
			c.found(ExecReverseShell)
		}
		for _, r := range cmd.redirs {
			c.redirect(r)
		}
		c.command(name, args, cmd, depth)
		switch {
		case netcats[name] || name == "telnet" || (name == "openssl" && has(args, "s_client")) || name == "socat":
			sawNet = true
		case fetchers[name]:
			sawFetch = true
		case isDecoder(name, args):
			sawDecode = true
		}
		if shells[name] || interpreters[name] {
			sawShell = true
		}
	}
	if sawNet && sawShell && len(pipe) > 1 {
		c.found(ExecReverseShell)
	}
}

func pipeHasNet(pipe []shellCmd) bool {
	for _, cmd := range pipe {
		args := unwrap(cmd.args)
		if len(args) > 0 {
			n := base(args[0])
			if netcats[n] || n == "telnet" || n == "socat" || (n == "openssl" && has(args, "s_client")) {
				return true
			}
		}
	}
	return false
}

// command classifies one simple command.
func (c *classifier) command(name string, args []string, cmd shellCmd, depth int) {
	for _, a := range args {
		c.word(a)
	}
	if name == "" {
		return
	}
	rest := args[1:]
	if strings.HasPrefix(args[0], "$(") || strings.HasPrefix(args[0], "`") {
		// The output of a substitution is run as a command.
		for _, sub := range cmd.subs {
			if scriptFetches(sub) || scriptDecodes(sub) {
				c.found(ExecDownloadRun)
			}
		}
	}
	if shells[name] || interpreters[name] || name == "source" || name == "." || name == "eval" {
		for _, a := range rest {
			if strings.HasPrefix(a, "<(") || strings.HasPrefix(a, "$(") || strings.HasPrefix(a, "`") {
				for _, sub := range cmd.subs {
					if scriptFetches(sub) || scriptDecodes(sub) {
						c.found(ExecDownloadRun)
					}
				}
			}
		}
	}
	switch {
	case shells[name] || name == "busybox" && len(rest) > 0 && shells[base(rest[0])]:
		if name == "busybox" {
			rest = rest[1:]
		}
		if code, ok := flagValue(rest, "-c"); ok {
			c.script(code, depth+1)
			if interactiveCode(code) {
				c.found(ExecShell)
			}
			return
		}
		if len(nonFlags(rest)) == 0 && len(cmd.redirs) == 0 {
			c.found(ExecShell)
		}
	case name == "eval":
		c.script(strings.Join(rest, " "), depth+1)
	case interpreters[name]:
		c.interpreter(name, rest)
	case netcats[name]:
		if netcatExec(rest) {
			c.found(ExecReverseShell)
		}
	case name == "socat":
		for _, a := range rest {
			l := strings.ToLower(a)
			if strings.HasPrefix(l, "exec:") || strings.HasPrefix(l, "system:") || strings.Contains(l, ",exec:") {
				c.found(ExecReverseShell)
			}
		}
	case name == "mkfifo" || (name == "mknod" && has(rest, "p")):
		// A named pipe joined to a network tool is the classic shell
		// relay; the pipeline check sees the rest.
	case name == "awk" || name == "gawk":
		for _, a := range rest {
			if strings.Contains(a, "/inet/tcp/") || strings.Contains(a, "/inet/udp/") {
				c.found(ExecReverseShell)
			}
		}
	case fetchers[name]:
		c.fetched = true
		if has(rest, "--unix-socket") {
			for _, a := range rest {
				if strings.Contains(a, "docker.sock") || strings.Contains(a, "containerd.sock") || strings.Contains(a, "crio.sock") {
					c.found(ExecContainerEscape)
				}
			}
		}
	case name == "chmod":
		if chmodExecutable(rest) {
			for _, a := range rest {
				if isScratchPath(a) {
					c.found(ExecToolDrop)
				}
			}
			if c.fetched {
				c.found(ExecDownloadRun)
			}
		}
	case name == "nsenter":
		if nsenterHost(rest) {
			c.found(ExecContainerEscape)
		}
	case name == "chroot":
		c.found(ExecContainerEscape)
	case name == "mount":
		escape := false
		for _, a := range rest {
			escape = escape || isBlockDevice(a)
		}
		if escape {
			c.found(ExecContainerEscape)
		} else {
			c.reconCommand(name)
		}
	case name == "docker" || name == "crictl" || name == "ctr" || name == "nerdctl" || name == "runc":
		for _, a := range rest {
			if strings.Contains(a, ".sock") || strings.HasPrefix(a, "unix://") {
				c.found(ExecContainerEscape)
			}
		}
	case name == "tar":
		if tarToStdout(rest) {
			c.found(ExecCopyOut)
		}
	case isPackageInstall(name, rest):
		c.found(ExecPackageInstall)
	case name == "kubectl" || reconCommands[name]:
		c.reconCommand(name)
	case reconRead(name, rest):
		c.reconCommand(strings.Join(args, " "))
	}
	if isScratchPath(args[0]) {
		// Running a binary from a scratch directory: a dropped tool, or
		// the download the script fetched.
		c.found(ExecToolDrop)
		if c.fetched {
			c.found(ExecDownloadRun)
		}
	}
}

// word classifies what an argument names, wherever it appears.
func (c *classifier) word(w string) {
	l := strings.ToLower(w)
	for _, m := range metadataEndpoints {
		if strings.Contains(l, m) {
			c.found(ExecCloudMetadata)
		}
	}
	for _, p := range credentialPaths {
		if strings.Contains(w, p) {
			c.found(ExecCredentialAccess)
		}
	}
	if strings.HasPrefix(w, "/proc/") && strings.HasSuffix(w, "/environ") {
		c.found(ExecCredentialAccess)
	}
	if strings.Contains(w, "/dev/tcp/") || strings.Contains(w, "/dev/udp/") {
		c.found(ExecReverseShell)
	}
	if strings.Contains(l, "release_agent") || strings.Contains(l, "/proc/sys/kernel/core_pattern") ||
		strings.Contains(w, "/proc/1/root") {
		c.found(ExecContainerEscape)
	}
}

func (c *classifier) redirect(r shellRedir) {
	c.word(r.target)
}

func (c *classifier) reconCommand(name string) {
	if c.reconSeen == nil {
		c.reconSeen = map[string]bool{}
	}
	if !c.reconSeen[name] {
		c.reconSeen[name] = true
		c.recon++
	}
	c.found(ExecRecon)
}

// interpreter classifies python -c, perl -e, ruby -e, php -r, node -e code.
func (c *classifier) interpreter(name string, rest []string) {
	flag := "-c"
	switch name {
	case "perl", "ruby", "node", "nodejs", "lua":
		flag = "-e"
	case "php":
		flag = "-r"
	case "pwsh", "powershell":
		flag = "-command"
	}
	code, ok := flagValue(rest, flag)
	if !ok && (name == "ruby" || name == "perl") {
		code, ok = flagValue(rest, "-E")
	}
	if !ok {
		return
	}
	c.word(code)
	l := strings.ToLower(code)
	sock := containsAny(l, "socket", "fsockopen", "tcpsocket", "net.socket", "require('net')", `require("net")`, "net.connect")
	spawn := containsAny(l, "subprocess", "pty.spawn", "dup2", "os.system", "popen", "exec(", "exec ", "system(",
		"shell_exec", "proc_open", "passthru", "child_process", "spawn(", "/bin/sh", "/bin/bash", "cmd.exe")
	if sock && spawn {
		c.found(ExecReverseShell)
		return
	}
	if strings.Contains(l, "pty.spawn") {
		c.found(ExecShell)
	}
	fetch := containsAny(l, "urlopen", "urllib", "requests.get", "http.client", "lwp::", "net::http", "open-uri",
		"http.get(", "https.get(", "invoke-webrequest", "downloadstring", "iwr ", "wget", "curl")
	decode := containsAny(l, "b64decode", "base64.decode", "decode_base64", "frombase64string", "unpack(\"m")
	run := containsAny(l, "exec(", "eval(", "exec ", "iex", "invoke-expression", "os.system", "subprocess", "system(")
	if (fetch || decode) && run {
		c.found(ExecDownloadRun)
	}
}

// execClassOf classifies an argv ([]string or []any, as queryParam and a
// container's command give it) or a command line written as one string.
func execClassOf(v any) string {
	switch v := v.(type) {
	case []string:
		return ExecClass(v)
	case []any:
		argv := make([]string, 0, len(v))
		for _, a := range v {
			if s, ok := a.(string); ok {
				argv = append(argv, s)
			}
		}
		return ExecClass(argv)
	case string:
		return ExecClassString(v)
	}
	return ""
}
