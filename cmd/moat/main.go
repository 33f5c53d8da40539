// Command moat is an SMTP border proxy: it stands on port 25 in front of a
// real mail server, passes known-good hosts straight through, greylists
// unknown ones and holds known-bad ones in a tarpit.
//
//	moat run [-c moat.toml]        run the proxy
//	moat check                     check the configuration, the backend, the store and the files
//	moat reload                    make the running daemon read its configuration again
//	moat hosts list|white|black|show|forget
//	moat traps list|add|del|candidates|promote|mine|decode|bait-snippet
//	moat status
//	moat export [FILE|-]           all state as JSON lines (backup, move between stores)
//	moat import FILE|-
//	moat demo                      moat on loopback with a built-in backend and simulated traffic
//	moat evaluate [--model FILE] [--policy NAME|FILE]... [--log FILE...]  what a policy stops and costs
//	moat version                   (or moat --version)
//
// Without -c (or $MOAT_CONFIG), moat reads /etc/moat/moat.toml when it
// exists, else runs with its built-in defaults, and says which.
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

	"moat/internal/buildinfo"
	"moat/internal/config"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(1)
	}
}

// systemConfig is the file read when no -c is given; tests point it
// elsewhere.
var systemConfig = config.SystemPath

func rootCmd() *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "moat",
		Short:         "SMTP border proxy: greylisting, tarpit and spamtraps in front of a real mail server",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Read().String(),
		// Without -c, the system's file when there is one: the
		// convention of Postfix and spamd. Say which, on standard
		// error, so that a command run with the wrong file shows it.
		PersistentPreRun: func(c *cobra.Command, _ []string) {
			// demo runs its own; evaluate takes its policies from --policy.
			if cfgPath != "" || c.Name() == "version" || c.Name() == "help" || c.Name() == "demo" || c.Name() == "evaluate" {
				return
			}
			if _, err := os.Stat(systemConfig); err == nil {
				cfgPath = systemConfig
				fmt.Fprintf(c.ErrOrStderr(), "moat: no -c given: reading %s\n", systemConfig)
				return
			}
			fmt.Fprintf(c.ErrOrStderr(), "moat: no -c given and no %s: using the built-in defaults\n", systemConfig)
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", os.Getenv("MOAT_CONFIG"),
		"configuration file (TOML); default: "+config.SystemPath+" when it exists, else the built-in defaults ($MOAT_CONFIG)")
	root.AddCommand(runCmd(&cfgPath), checkCmd(&cfgPath), reloadCmd(&cfgPath), hostsCmd(&cfgPath), trapsCmd(&cfgPath),
		statusCmd(&cfgPath), exportCmd(&cfgPath), importCmd(&cfgPath), demoCmd(), evaluateCmd(), versionCmd())
	return root
}
