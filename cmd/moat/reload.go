package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/config"
)

// reloadCmd is "moat reload": the running daemon reads its configuration
// file again, as on SIGHUP, and this command says what it applied, or
// prints why it refused and fails (exit 1), the running configuration
// unchanged. systemctl reload runs it.
func reloadCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "make the running daemon read its configuration file again and apply what can change live",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			socket := config.AdminSocketOf(*cfgPath)
			var res admin.Reloaded
			err := admin.NewClient(socket).Do("POST", "/v1/reload", nil, &res)
			if errors.Is(err, admin.ErrNoDaemon) {
				return fmt.Errorf("no moat daemon answers on %s: nothing to reload ('moat check' checks a file)", socket)
			}
			if err != nil {
				return fmt.Errorf("reload refused, the running configuration stays:\n%w", err)
			}
			w := c.OutOrStdout()
			from := config.Source(res.Config)
			if res.Config == "" {
				from = "the " + from
			}
			switch {
			case len(res.Applied) == 0:
				fmt.Fprintf(w, "reloaded %s: no changed key to apply (files such as the TLS certificate were read again)\n", from)
			default:
				fmt.Fprintf(w, "reloaded %s: applied %s\n", from, strings.Join(res.Applied, ", "))
			}
			if len(res.Restart) > 0 {
				fmt.Fprintf(w, "changed, but applied only after a restart: %s\n", strings.Join(res.Restart, ", "))
			}
			return nil
		},
	}
}
