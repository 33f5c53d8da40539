package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"moat/internal/buildinfo"
)

// versionCmd is "moat version"; "moat --version" prints the same line.
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print moat's module version, VCS revision and build date",
		Args:  cobra.NoArgs,
		Run:   func(c *cobra.Command, _ []string) { fmt.Fprintln(c.OutOrStdout(), buildinfo.Read()) },
	}
}
