package incident

import (
	"fmt"
	"slices"
	"strings"
)

// Tactics are the MITRE ATT&CK tactics in the order of the matrix
// (ATT&CK for Containers uses a subset of them).
var Tactics = []string{
	"reconnaissance", "resource-development", "initial-access", "execution", "persistence",
	"privilege-escalation", "defense-evasion", "credential-access", "discovery",
	"lateral-movement", "collection", "command-and-control", "exfiltration", "impact",
}

// techniqueTactic gives the tactic of a technique for rules whose tags name
// techniques but no tactic. A technique listed under several tactics in
// ATT&CK gets the one it most often serves against a cluster's API.
// Sub-techniques fall back to their parent.
var techniqueTactic = map[string]string{
	"T1595": "reconnaissance", // Active Scanning
	"T1133": "initial-access", // External Remote Services
	"T1190": "initial-access", // Exploit Public-Facing Application
	"T1078": "initial-access", // Valid Accounts
	"T1609": "execution",      // Container Administration Command
	"T1610": "execution",      // Deploy Container
	"T1204": "execution",      // User Execution (malicious image)
	"T1053": "execution",      // Scheduled Task/Job (container orchestration job)
	"T1059": "execution",      // Command and Scripting Interpreter
	"T1098": "persistence",    // Account Manipulation (additional cluster roles)
	"T1136": "persistence",    // Create Account
	"T1525": "persistence",    // Implant Internal Image
	"T1546": "persistence",    // Event Triggered Execution (admission webhooks)
	"T1543": "persistence",    // Create or Modify System Process
	"T1611": "privilege-escalation",
	"T1068": "privilege-escalation",
	"T1134": "privilege-escalation", // Access Token Manipulation (impersonation)
	"T1484": "privilege-escalation", // Domain or Tenant Policy Modification
	"T1070": "defense-evasion",      // Indicator Removal
	"T1562": "defense-evasion",      // Impair Defenses
	"T1036": "defense-evasion",      // Masquerading
	"T1550": "defense-evasion",      // Use Alternate Authentication Material
	"T1612": "defense-evasion",      // Build Image on Host
	"T1552": "credential-access",    // Unsecured Credentials (container API)
	"T1528": "credential-access",    // Steal Application Access Token
	"T1649": "credential-access",    // Steal or Forge Authentication Certificates
	"T1110": "credential-access",    // Brute Force
	"T1556": "credential-access",    // Modify Authentication Process
	"T1613": "discovery",            // Container and Resource Discovery
	"T1069": "discovery",            // Permission Groups Discovery
	"T1087": "discovery",            // Account Discovery
	"T1046": "discovery",            // Network Service Discovery
	"T1021": "lateral-movement",     // Remote Services
	"T1005": "collection",           // Data from Local System
	"T1530": "collection",           // Data from Cloud Storage
	"T1090": "command-and-control",  // Proxy (port-forward)
	"T1105": "command-and-control",  // Ingress Tool Transfer
	"T1041": "exfiltration",         // Exfiltration Over C2 Channel
	"T1485": "impact",               // Data Destruction
	"T1490": "impact",               // Inhibit System Recovery
	"T1496": "impact",               // Resource Hijacking
	"T1498": "impact",               // Network Denial of Service
	"T1499": "impact",               // Endpoint Denial of Service
	"T1531": "impact",               // Account Access Removal
}

// TacticsOf returns the ATT&CK tactics a rule's tags name, in matrix
// order: every attack.<tactic> tag, or, when there is none, the tactic of
// each technique id (T1234, T1234.001) the table knows.
func TacticsOf(tags []string) []string {
	var found []string
	for _, t := range tags {
		if name, ok := strings.CutPrefix(strings.ToLower(t), "attack."); ok {
			name = strings.ReplaceAll(name, "_", "-")
			if slices.Contains(Tactics, name) {
				found = append(found, name)
			}
		}
	}
	if len(found) == 0 {
		for _, t := range tags {
			if tactic := TechniqueTactic(t); tactic != "" {
				found = append(found, tactic)
			}
		}
	}
	return inMatrixOrder(found)
}

// TechniqueTactic returns the tactic of a technique id ("T1552.007",
// "attack.t1552"), or "" when the id is unknown.
func TechniqueTactic(id string) string {
	id = strings.ToUpper(strings.TrimPrefix(strings.ToLower(id), "attack."))
	if tactic, ok := techniqueTactic[id]; ok {
		return tactic
	}
	parent, _, _ := strings.Cut(id, ".")
	return techniqueTactic[parent]
}

// Techniques returns the technique ids among tags, upper-cased.
func Techniques(tags []string) []string {
	var out []string
	for _, t := range tags {
		id := strings.ToUpper(strings.TrimPrefix(strings.ToLower(t), "attack."))
		if len(id) >= 5 && id[0] == 'T' && id[1] >= '0' && id[1] <= '9' {
			out = append(out, id)
		}
	}
	return out
}

func inMatrixOrder(tactics []string) []string {
	var out []string
	for _, t := range Tactics {
		if slices.Contains(tactics, t) {
			out = append(out, t)
		}
	}
	return out
}

// Stage is a step of the kill chain an incident's score counts:
// discovery → credential access → privilege escalation → persistence →
// impact.
type Stage int

// Stages of the kill chain, in order.
const (
	NoStage Stage = iota
	StageDiscovery
	StageCredentialAccess
	StagePrivilegeEscalation
	StagePersistence
	StageImpact
)

var stageNames = []string{"", "discovery", "credential access", "privilege escalation", "persistence", "impact"}

func (s Stage) String() string { return stageNames[s] }

// MarshalText writes the stage name (JSON).
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a stage name (JSON).
func (s *Stage) UnmarshalText(b []byte) error {
	i := slices.Index(stageNames[1:], string(b))
	if i < 0 {
		return fmt.Errorf("unknown kill-chain stage %q", b)
	}
	*s = Stage(i + 1)
	return nil
}

// tacticStage folds the ATT&CK tactics into the five stages. Tactics that
// are not one of the five join the stage whose goal they serve against a
// cluster: getting in with a credential is credential access; running
// code in a workload or moving to another identity gains its rights;
// hiding and tunnelling keep access; collecting and taking data out is
// the impact.
var tacticStage = map[string]Stage{
	"reconnaissance":       StageDiscovery,
	"discovery":            StageDiscovery,
	"initial-access":       StageCredentialAccess,
	"credential-access":    StageCredentialAccess,
	"execution":            StagePrivilegeEscalation,
	"privilege-escalation": StagePrivilegeEscalation,
	"lateral-movement":     StagePrivilegeEscalation,
	"persistence":          StagePersistence,
	"defense-evasion":      StagePersistence,
	"command-and-control":  StagePersistence,
	"collection":           StageImpact,
	"exfiltration":         StageImpact,
	"impact":               StageImpact,
}

// StageOf returns the kill-chain stage of an ATT&CK tactic (NoStage for
// resource-development and unknown names).
func StageOf(tactic string) Stage { return tacticStage[tactic] }
