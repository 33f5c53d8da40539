package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"moat/internal/admin"
)

// statusCmd is "moat status".
func statusCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "counts per class, connections now, tarpit seconds held in total",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st admin.Status
			if err := op.do("GET", "/v1/status", nil, &st); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			w := c.OutOrStdout()
			state := "not running (figures from the store)"
			if st.Running {
				state = "running"
			}
			fmt.Fprintf(w, "moat: %s\n", state)
			fmt.Fprintf(w, "hosts: %d white, %d grey, %d black\n", st.Hosts["white"], st.Hosts["grey"], st.Hosts["black"])
			fmt.Fprintf(w, "connections now: %d (tarpit: %d held)\n", st.Connections, st.TarpitHeld)
			fmt.Fprintf(w, "tarpit: %.0f seconds held in total, %d black connections refused (tarpit full)\n", st.TarpitSeconds, st.TarpitRefused)
			fmt.Fprintf(w, "traps: %d addresses, %d hits\n", st.Traps, st.TrapHits)
			for _, t := range st.TopTraps {
				fmt.Fprintf(w, "  %8d  %s\n", t.Hits, t.Addr)
			}
			if len(st.Sessions) > 0 {
				var parts []string
				for k, v := range st.Sessions {
					parts = append(parts, fmt.Sprintf("%s %d", k, v))
				}
				sort.Strings(parts)
				fmt.Fprintf(w, "sessions since start: %s\n", strings.Join(parts, ", "))
			}
			if st.StoreDown != nil {
				fmt.Fprintf(w, "store: UNREACHABLE since %s: unknown hosts get 4xx, cached ones are served\n", fmtTime(*st.StoreDown))
			}
			if st.StoreErrors > 0 {
				fmt.Fprintf(w, "store errors: %d\n", st.StoreErrors)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
