// Command moat is an SMTP border proxy: it stands on port 25 in front of a
// real mail server, passes known-good hosts straight through, greylists
// unknown ones and holds known-bad ones in a tarpit.
//
//	moat run [-c moat.toml]        run the proxy
//	moat hosts list|white|black|show|forget
//	moat traps list|add|del|candidates|promote|mine|decode|bait-snippet
//	moat status
//	moat export [FILE|-]           all state as JSON lines (backup, move between stores)
//	moat import FILE|-
//	moat version
//
// The daemon is assembled in internal/daemon; this package holds the
// command line, one file per noun. The commands that read or change
// moat's state go through the admin API, to the daemon or, when none
// runs, to the store directly (operator.go).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "moat",
		Short:         "SMTP border proxy: greylisting, tarpit and spamtraps in front of a real mail server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", os.Getenv("MOAT_CONFIG"),
		"configuration file (TOML); default: built-in defaults ($MOAT_CONFIG)")
	root.AddCommand(runCmd(&cfgPath), hostsCmd(&cfgPath), trapsCmd(&cfgPath), statusCmd(&cfgPath),
		exportCmd(&cfgPath), importCmd(&cfgPath), versionCmd())
	return root
}
