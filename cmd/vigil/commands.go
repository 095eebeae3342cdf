package main

import "github.com/spf13/cobra"

// extraCommands are the subcommands beside replay, rules and version.
func (a *app) extraCommands() []*cobra.Command {
	return []*cobra.Command{a.serveCmd(), a.policyCmd(), a.deadLettersCmd(), a.timelineCmd(), a.respondCmd()}
}
