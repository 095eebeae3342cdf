// Package incident groups alerts into incidents: what one credential did,
// joined with the credentials it granted roles to, impersonated or minted
// tokens for, with a risk score from severity, alert counts and the
// kill-chain stages reached (after MITRE ATT&CK for Containers).
//
// A Tracker takes alerts one at a time, as vigil replay and vigil serve
// raise them, and says when an incident opens or escalates; Incidents
// returns them ranked. The JSON form and the score are documented in
// docs/incidents.md.
package incident
