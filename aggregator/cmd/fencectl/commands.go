package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

func (a *app) enrollCmd() *cobra.Command {
	var device, ttl string
	cmd := &cobra.Command{
		Use:   "enroll --device D",
		Short: "Issue a one-time enrollment token for a device and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("enrollments")
			if err != nil {
				return err
			}
			var res api.EnrollmentResponse
			err = a.call(cmd.Context(), "POST", p, nil,
				api.EnrollmentRequest{Device: device, TTL: ttl}, &res)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stderr, "one-time token for %s/%s, valid until %s:\n", res.Tenant,
				res.Device, res.Expires.Format(time.RFC3339))
			_, err = fmt.Fprintln(a.stdout, res.Token)
			return err
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "device name (required)")
	cmd.Flags().StringVar(&ttl, "ttl", "", "token validity, e.g. 1h (default: the aggregator's)")
	cmd.MarkFlagRequired("device")
	return cmd
}

func (a *app) deviceCmd() *cobra.Command {
	dev := &cobra.Command{Use: "device", Short: "Enrolled devices and their history"}
	dev.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the tenant's devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("devices")
			if err != nil {
				return err
			}
			var devs []model.Device
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &devs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(devs)
			}
			w := a.table("DEVICE", "TAGS", "HEAD", "LAST SEEN", "LAST HEARTBEAT", "DIGEST", "KEY", "ENROLLED")
			for _, d := range devs {
				row(w, d.Device, strings.Join(d.Tags, ","), strconv.FormatUint(d.HeadSeq, 10),
					ts(d.LastSeen), ts(d.LastHeartbeat), short(d.Digest), short(d.KeyID), ts(d.EnrolledAt))
			}
			return w.Flush()
		},
	})

	var limit int
	var kinds string
	hist := &cobra.Command{
		Use:   "history DEVICE",
		Short: "Show a device's events, newest last",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("devices", args[0], "events")
			if err != nil {
				return err
			}
			q := url.Values{}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if kinds != "" {
				q.Set("kind", kinds)
			}
			var evs []model.Event
			if err := a.call(cmd.Context(), "GET", p, q, nil, &evs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(evs)
			}
			w := a.table("SEQ", "KIND", "OBSERVED", "DIGEST", "BY", "CHANGE", "WHERE", "WHAT")
			for _, e := range evs {
				by := committerText(e.Committer)
				first := []string{strconv.FormatUint(e.Seq, 10), string(e.Kind), e.Observed, short(e.After), by}
				if len(e.Changes) == 0 {
					row(w, append(first, "", "", "")...)
				}
				for i, c := range e.Changes {
					d := model.Deviation{Family: c.Family, Table: c.Table, Chain: c.Chain, Rule: c.Rule,
						Set: c.Set, Element: c.Element, Object: c.Object}
					where := c.Family + " " + c.Table
					if c.Chain != "" {
						where += " " + c.Chain
					}
					if c.Position > 0 {
						where += " #" + strconv.Itoa(c.Position)
					}
					lead := first
					if i > 0 {
						lead = []string{"", "", "", "", ""}
					}
					row(w, append(lead, string(c.Kind), where, d.What())...)
				}
			}
			return w.Flush()
		},
	}
	hist.Flags().IntVar(&limit, "limit", 0, "show only the newest N events (server default 1000)")
	hist.Flags().StringVar(&kinds, "kind", "",
		"only these kinds, comma-separated: baseline, change, heartbeat, reconcile, fold, resync")
	dev.AddCommand(hist, a.deviceTagCmd())
	return dev
}

// table starts an aligned table with a header row.
func (a *app) table(header ...string) *tabwriter.Writer {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	row(w, header...)
	return w
}

func row(w *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		if i > 0 {
			w.Write([]byte{'\t'})
		}
		w.Write([]byte(strings.ReplaceAll(c, "\t", " ")))
	}
	w.Write([]byte{'\n'})
}

// ts formats a time for tables; zero is "-".
func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// short abbreviates a digest or key id for tables: "sha256:1a2b3c4d5e6f".
func short(s string) string {
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok {
		prefix, rest = "", s
	} else {
		prefix += ":"
	}
	if len(rest) > 12 {
		rest = rest[:12]
	}
	return prefix + rest
}

// committerText is who made a change as the history shows it: the process as
// "nft[1234]", the login ("alice", the user an SNMP trap named), or both; "-" when the
// event names no one.
func committerText(c *event.Committer) string {
	if c == nil {
		return "-"
	}
	var parts []string
	switch {
	case c.Comm != "" && c.PID != 0:
		parts = append(parts, fmt.Sprintf("%s[%d]", c.Comm, c.PID))
	case c.Comm != "":
		parts = append(parts, c.Comm)
	}
	if c.LoginUID != "" {
		parts = append(parts, c.LoginUID)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
