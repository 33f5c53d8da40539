package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/config"
)

// operator runs one request against the daemon if it runs, or against
// the store directly if it does not, so the commands work either way.
type operator struct {
	cfgPath *string
}

func (o operator) do(method, path string, body, out any, local func(*admin.Service) (any, error)) error {
	cfg, err := config.Load(*o.cfgPath)
	if err != nil {
		return err
	}
	err = admin.NewClient(cfg.AdminSocket()).Do(method, path, body, out)
	if !errors.Is(err, admin.ErrNoDaemon) {
		return err
	}
	st, err := openStore(cfg)
	if err != nil {
		return fmt.Errorf("no moat daemon answers on %s, and the store cannot be opened: %w", cfg.AdminSocket(), err)
	}
	defer st.Close()
	eng, ts, err := newEngine(cfg, st)
	if err != nil {
		return err
	}
	v, err := local(&admin.Service{Eng: eng, Traps: ts})
	if err != nil {
		return err
	}
	if out != nil {
		b, _ := json.Marshal(v)
		return json.Unmarshal(b, out)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func hostsCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath}
	cmd := &cobra.Command{Use: "hosts", Short: "list and change what moat remembers of client hosts"}
	var class string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "list hosts: IP, class, reason, first and last seen, expiry",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if class != "" {
				switch class {
				case "white", "grey", "gray", "black":
				default:
					return fmt.Errorf("--class %q: want white, grey or black", class)
				}
			}
			var hs []admin.HostView
			q := ""
			if class != "" {
				q = "?class=" + class
			}
			if err := op.do("GET", "/v1/hosts"+q, nil, &hs, func(s *admin.Service) (any, error) { return s.Hosts(class) }); err != nil {
				return err
			}
			if hs == nil {
				hs = []admin.HostView{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), hs)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IP\tCLASS\tREASON\tFIRST SEEN\tLAST SEEN\tEXPIRES\tTARPIT")
			for _, h := range hs {
				exp := "never"
				if h.Expires != nil {
					exp = fmtTime(*h.Expires)
				}
				held := "-"
				if h.Held > 0 {
					held = (time.Duration(h.Held) * time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.IP, h.Class, h.Reason, fmtTime(h.FirstSeen), fmtTime(h.LastSeen), exp, held)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&class, "class", "", "only hosts of this class: white, grey or black")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	for _, cl := range []string{"white", "black"} {
		var force bool
		set := &cobra.Command{
			Use:   cl + " IP|CIDR",
			Short: "make a host or network " + cl + " until you change it",
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if _, err := admin.ParseTarget(args[0]); err != nil {
					return err
				}
				var res struct{ Stored string }
				err := op.do("POST", "/v1/hosts", map[string]any{"ip": args[0], "class": cl, "force": force}, &res,
					func(s *admin.Service) (any, error) {
						p, err := s.SetClass(args[0], cl, force)
						return map[string]string{"stored": p.String()}, err
					})
				if err != nil {
					return err
				}
				// Say what was stored: 192.0.2.7/24 is 192.0.2.0/24.
				fmt.Fprintf(c.OutOrStdout(), "%s is %s\n", res.Stored, cl)
				return nil
			},
		}
		set.Flags().BoolVar(&force, "force", false, "allow a network wider than a /16 (IPv4) or a /32 (IPv6)")
		cmd.AddCommand(set)
	}
	cmd.AddCommand(hostsShowCmd(op)) // hosts_show.go
	cmd.AddCommand(&cobra.Command{
		Use:   "forget IP|CIDR",
		Short: "forget a host or network: it is grey again",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := admin.ParseTarget(args[0]); err != nil {
				return err
			}
			err := op.do("DELETE", "/v1/hosts/"+args[0], nil, nil,
				func(s *admin.Service) (any, error) { return nil, s.Forget(args[0]) })
			if err == nil {
				fmt.Fprintf(c.OutOrStdout(), "%s forgotten\n", args[0])
			}
			return err
		},
	})
	return cmd
}

func trapsCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath}
	cmd := &cobra.Command{Use: "traps", Short: "list and change spamtrap addresses"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "list trap addresses with their hit counts",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var tl []map[string]any
			if err := op.do("GET", "/v1/traps", nil, &tl, func(s *admin.Service) (any, error) { return s.Traps.List() }); err != nil {
				return err
			}
			if tl == nil {
				tl = []map[string]any{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), tl)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tSOURCE\tHITS")
			for _, t := range tl {
				fmt.Fprintf(tw, "%v\t%v\t%v\n", t["addr"], t["source"], t["hits"])
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	cmd.AddCommand(&cobra.Command{
		Use:   "add ADDR",
		Short: "add a trap address: any host that writes to it becomes black",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var out map[string]string
			err := op.do("POST", "/v1/traps", map[string]string{"addr": args[0]}, &out, func(s *admin.Service) (any, error) {
				n, err := s.Traps.Add(args[0])
				return map[string]string{"added": n}, err
			})
			if err == nil {
				fmt.Fprintf(c.OutOrStdout(), "trap %s added\n", out["added"])
			}
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "del ADDR",
		Short: "remove a trap address added with 'traps add'",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var out map[string]string
			err := op.do("DELETE", "/v1/traps/"+args[0], nil, &out, func(s *admin.Service) (any, error) {
				n, err := s.Traps.Del(args[0])
				return map[string]string{"deleted": n}, err
			})
			if err == nil {
				fmt.Fprintf(c.OutOrStdout(), "trap %s removed\n", out["deleted"])
			}
			return err
		},
	})
	addTrapsCommands(cmd, cfgPath)
	return cmd
}

func statusCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "counts per class, connections now, tarpit seconds held in total",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st admin.Status
			if err := op.do("GET", "/v1/status", nil, &st, func(s *admin.Service) (any, error) { return s.Status() }); err != nil {
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
