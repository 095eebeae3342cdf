package detect

import (
	"path"
	"strings"
)

// What the classifier knows about commands, arguments and paths.

// hasScriptArg reports whether a shell or interpreter was given its
// program (a -c/-e string or a script file) rather than reading stdin.
func hasScriptArg(name string, args []string) bool {
	rest := args[1:]
	for i, a := range rest {
		switch {
		case a == "-c" || a == "-e" || a == "-E" || a == "-r":
			return i+1 < len(rest)
		case a == "-s" || a == "--":
			return false
		case a == "-" || a == "-i":
			continue
		case strings.HasPrefix(a, "-"):
			continue
		default:
			return true
		}
	}
	return false
}

// unwrap drops wrapper commands (env, nohup, timeout 10, sudo -u x) and
// environment assignments before the command they run.
func unwrap(args []string) []string {
	for len(args) > 0 {
		a := args[0]
		if strings.Contains(a, "=") && !strings.HasPrefix(a, "-") && !strings.Contains(a, "/") {
			args = args[1:]
			continue
		}
		if !wrappers[base(a)] {
			return args
		}
		rest := args[1:]
		for len(rest) > 0 && (strings.HasPrefix(rest[0], "-") || isDigits(strings.TrimRight(rest[0], "smhd"))) {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			// A wrapper alone (env) is the command itself.
			return args[:1]
		}
		args = rest
	}
	return args
}

func base(p string) string {
	b := path.Base(p)
	if b == "." || b == "/" {
		return ""
	}
	return b
}

// flagValue returns the argument after flag (also -xc style clusters for
// -c), the script of sh -c or the code of python -c.
func flagValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if strings.EqualFold(a, flag) || (len(flag) == 2 && len(a) > 2 && a[0] == '-' && a[1] != '-' &&
			strings.HasSuffix(a, flag[1:]) && isLetters(a[1:])) {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		}
	}
	return "", false
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < 'a' || s[i] > 'z') && (s[i] < 'A' || s[i] > 'Z') {
			return false
		}
	}
	return s != ""
}

func nonFlags(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			out = append(out, a)
		}
	}
	return out
}

func has(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// interactiveCode reports whether a -c script only starts a shell: sh -c
// 'bash' or sh -c 'exec bash -il'.
func interactiveCode(code string) bool {
	sc := parseShell(code)
	if len(sc) != 1 || len(sc[0]) != 1 {
		return false
	}
	args := unwrap(sc[0][0].args)
	return len(args) > 0 && shells[base(args[0])] && len(nonFlags(args[1:])) == 0
}

// netcatExec reports nc -e / -c / --exec / --sh-exec, alone or in a flag
// cluster such as -nve.
func netcatExec(args []string) bool {
	for _, a := range args {
		switch {
		case a == "--exec" || a == "--sh-exec" || a == "--lua-exec" || strings.HasPrefix(a, "--exec=") ||
			strings.HasPrefix(a, "--sh-exec="):
			return true
		case len(a) > 1 && a[0] == '-' && a[1] != '-' && isLetters(a[1:]) &&
			(strings.ContainsRune(a[1:], 'e') || strings.ContainsRune(a[1:], 'c')):
			return true
		}
	}
	return false
}

func isDecoder(name string, args []string) bool {
	switch name {
	case "base64", "base32":
		return has(args, "-d") || has(args, "--decode") || has(args, "-D")
	case "xxd":
		return has(args, "-r") || has(args, "-r -p")
	case "openssl":
		return has(args, "-d") && (has(args, "-base64") || has(args, "-a") || has(args, "base64"))
	case "gunzip", "zcat":
		return true
	}
	return false
}

func scriptFetches(s string) bool {
	for _, pipe := range parseShell(s) {
		for _, cmd := range pipe {
			args := unwrap(cmd.args)
			if len(args) > 0 && fetchers[base(args[0])] {
				return true
			}
		}
	}
	return false
}

func scriptDecodes(s string) bool {
	for _, pipe := range parseShell(s) {
		for _, cmd := range pipe {
			args := unwrap(cmd.args)
			if len(args) > 0 && isDecoder(base(args[0]), args[1:]) {
				return true
			}
		}
	}
	return false
}

func chmodExecutable(args []string) bool {
	for _, a := range args {
		if strings.Contains(a, "+x") || strings.Contains(a, "+rwx") || strings.Contains(a, "a+x") {
			return true
		}
		if len(a) >= 3 && len(a) <= 4 && isDigits(a) {
			if d := a[len(a)-3]; d == '7' || d == '5' || d == '1' || d == '3' {
				return true
			}
		}
	}
	return false
}

// scratchDirs are world-writable places where dropped tools land.
var scratchDirs = []string{"/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/usr/local/bin/.", "/var/run/.", "/tmp", "/dev/shm"}

func isScratchPath(p string) bool {
	for _, d := range scratchDirs {
		if strings.HasSuffix(d, "/") || strings.HasSuffix(d, ".") {
			if strings.HasPrefix(p, d) {
				return true
			}
		} else if p == d {
			return true
		}
	}
	return false
}

func nsenterHost(args []string) bool {
	for i, a := range args {
		switch {
		case (a == "-t" || a == "--target") && i+1 < len(args) && args[i+1] == "1":
			return true
		case a == "--target=1" || a == "-t1":
			return true
		case strings.HasPrefix(a, "--mount=/proc/1/") || strings.HasPrefix(a, "-m/proc/1/"):
			return true
		}
	}
	return false
}

func isBlockDevice(a string) bool {
	for _, p := range []string{"/dev/sd", "/dev/nvme", "/dev/xvd", "/dev/vd", "/dev/hd", "/dev/mapper/", "/dev/root", "/dev/dm-"} {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

// tarToStdout reports tar creating an archive on standard output, which is
// what kubectl cp runs in the container to copy files out.
func tarToStdout(args []string) bool {
	create, toStdout := false, false
	for i, a := range args {
		switch {
		case a == "--create":
			create = true
		case a == "--file=-" || ((a == "--file" || a == "-f") && i+1 < len(args) && args[i+1] == "-"):
			toStdout = true
		case i == 0 && !strings.HasPrefix(a, "-") && isLetters(a), len(a) > 1 && a[0] == '-' && a[1] != '-' && isLetters(a[1:]):
			letters := strings.TrimPrefix(a, "-")
			if strings.ContainsRune(letters, 'c') {
				create = true
			}
			if strings.HasSuffix(letters, "f") && i+1 < len(args) && args[i+1] == "-" {
				toStdout = true
			}
		}
	}
	return create && toStdout
}

func isPackageInstall(name string, args []string) bool {
	switch name {
	case "apt", "apt-get", "aptitude", "yum", "dnf", "microdnf", "zypper", "tdnf":
		return has(args, "install")
	case "apk":
		return has(args, "add")
	case "pip", "pip3", "pip2", "gem", "cargo", "conda", "mamba":
		return has(args, "install")
	case "npm", "pnpm", "yarn":
		return (has(args, "install") || has(args, "i") || has(args, "add")) && (has(args, "-g") || has(args, "--global") || has(args, "global"))
	case "go":
		return has(args, "install")
	case "rpm":
		for _, a := range args {
			if strings.HasPrefix(a, "-i") || strings.HasPrefix(a, "-U") {
				return true
			}
		}
	case "dpkg":
		return has(args, "-i") || has(args, "--install")
	}
	return false
}

// reconCommands are what an intruder runs first to learn where it landed.
var reconCommands = map[string]bool{"id": true, "whoami": true, "uname": true, "hostname": true, "ifconfig": true,
	"ip": true, "netstat": true, "ss": true, "env": true, "printenv": true, "capsh": true, "getcap": true,
	"nmap": true, "masscan": true, "arp": true, "route": true, "lsblk": true, "fdisk": true, "w": true,
	"who": true, "last": true, "groups": true, "lsns": true, "findmnt": true, "ps": true, "mount": true,
	"df": true, "getent": true, "amicontained": true, "deepce": true, "linpeas.sh": true, "peirates": true}

// reconFiles are files whose reading tells where a command runs.
var reconFiles = []string{"/etc/passwd", "/etc/group", "/etc/os-release", "/etc/issue", "/proc/version",
	"/proc/1/cgroup", "/proc/self/cgroup", "/proc/self/status", "/proc/1/status", "/proc/mounts",
	"/proc/self/mountinfo", "/etc/hosts"}

func reconRead(name string, args []string) bool {
	switch name {
	case "cat", "head", "tail", "less", "more", "grep", "strings":
		for _, a := range args {
			for _, f := range reconFiles {
				if a == f {
					return true
				}
			}
		}
	case "find":
		return has(args, "-perm") && (has(args, "-4000") || has(args, "-u=s") || has(args, "/4000") || has(args, "-2000"))
	case "ls":
		for _, a := range args {
			if a == "/" || a == "/root" || a == "/home" || a == "/var/run" || a == "/run" || strings.HasPrefix(a, "/proc/") {
				return true
			}
		}
	}
	return false
}

// metadataEndpoints are the cloud instance-metadata services, which hand
// out the node's cloud credentials to anything that asks from the node's
// network.
var metadataEndpoints = []string{"169.254.169.254", "metadata.google.internal", "169.254.170.2",
	"fd00:ec2::254", "100.100.100.200", "metadata.azure.com", "computemetadata/v1", "metadata/identity/oauth2",
	"/latest/meta-data", "/latest/api/token"}

// credentialPaths hold service-account tokens, node and control-plane keys
// and cloud or registry credentials.
var credentialPaths = []string{"/var/run/secrets/kubernetes.io", "/run/secrets/kubernetes.io",
	"/var/run/secrets/eks.amazonaws.com", "/var/run/secrets/tokens", "/var/run/secrets/azure",
	"/etc/shadow", "/etc/gshadow", "/etc/kubernetes/", "/var/lib/kubelet/", "/.kube/config", "/.aws/credentials",
	"/.config/gcloud", "/.docker/config.json", "/.ssh/id_", "/etc/ssl/private/", "/.git-credentials",
	"/.netrc", "/var/lib/etcd"}
