package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/model"
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

// changesFlag collects --add and --delete in the order given.
type changesFlag struct {
	action  string
	changes *[]model.PlannedChange
}

func (f *changesFlag) String() string { return "" }
func (f *changesFlag) Type() string   { return "CHAIN|RULE" }

// Set parses "family table chain|rule text". The chain never holds '|', the rule may.
func (f *changesFlag) Set(v string) error {
	chain, rule, ok := strings.Cut(v, "|")
	if !ok || strings.TrimSpace(chain) == "" || strings.TrimSpace(rule) == "" {
		return fmt.Errorf("want 'family table chain|rule', e.g. 'inet filter input|tcp dport 22 accept'")
	}
	*f.changes = append(*f.changes, model.PlannedChange{
		Action: f.action, Chain: strings.TrimSpace(chain), Rule: strings.TrimSpace(rule),
	})
	return nil
}

var _ pflag.Value = (*changesFlag)(nil)

func (a *app) crCmd() *cobra.Command {
	cr := &cobra.Command{Use: "cr", Short: "Change requests"}
	cr.AddCommand(a.crCreateCmd(), a.crApproveCmd(), a.crListCmd(), a.crShowCmd())
	return cr
}

func (a *app) crCreateCmd() *cobra.Command {
	var req api.CRRequest
	var file string
	var changes []model.PlannedChange
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a change request (state submitted)",
		Long: "Create a change request from flags, or from a JSON file with the API's fields\n" +
			"(id, title, requester, device, window_start, window_end, changes); flags given\n" +
			"with --file override its fields and add to its changes.\n\n" +
			"Windows are RFC 3339 times, \"now\", or a duration from now such as +2h.",
		Example: "  fencectl cr create --device fw1 --title 'Open HTTPS' --requester alice \\\n" +
			"    --window-start now --window-end +2h --add 'inet filter input|tcp dport 443 accept'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := api.CRRequest{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &body); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
			mergeCR(&body, &req, changes)
			var err error
			if body.WindowStart, err = windowTime(body.WindowStart); err != nil {
				return fmt.Errorf("--window-start: %w", err)
			}
			if body.WindowEnd, err = windowTime(body.WindowEnd); err != nil {
				return fmt.Errorf("--window-end: %w", err)
			}
			p, err := a.tenantPath("crs")
			if err != nil {
				return err
			}
			var out model.CR
			if err := a.call(cmd.Context(), "POST", p, nil, body, &out); err != nil {
				return err
			}
			return a.showCR(&out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.ID, "id", "", "CR id or external ticket id (default: numbered CR-000001 …)")
	f.StringVar(&req.Title, "title", "", "title")
	f.StringVar(&req.Requester, "requester", "", "who requests the change")
	f.StringVar(&req.Device, "device", "", "target device")
	f.StringVar(&req.WindowStart, "window-start", "", "window start")
	f.StringVar(&req.WindowEnd, "window-end", "", "window end")
	f.Var(&changesFlag{action: model.ActionAdd, changes: &changes}, "add",
		"planned rule addition 'family table chain|rule' (repeatable)")
	f.Var(&changesFlag{action: model.ActionDelete, changes: &changes}, "delete",
		"planned rule deletion 'family table chain|rule' (repeatable)")
	f.StringVar(&file, "file", "", "read the CR from a JSON file")
	return cmd
}

func mergeCR(dst, flags *api.CRRequest, changes []model.PlannedChange) {
	set := func(d *string, v string) {
		if v != "" {
			*d = v
		}
	}
	set(&dst.ID, flags.ID)
	set(&dst.Title, flags.Title)
	set(&dst.Requester, flags.Requester)
	set(&dst.Device, flags.Device)
	set(&dst.WindowStart, flags.WindowStart)
	set(&dst.WindowEnd, flags.WindowEnd)
	dst.Changes = append(dst.Changes, changes...)
}

// windowTime turns "now" and "+2h"-style offsets into RFC 3339; other values pass as
// given for the server to check.
func windowTime(v string) (string, error) {
	now := time.Now().UTC()
	switch {
	case v == "now":
		return now.Format(time.RFC3339), nil
	case strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v)
		if err != nil {
			return "", fmt.Errorf("%q: want an RFC 3339 time, now, or an offset like +2h", v)
		}
		return now.Add(d).Format(time.RFC3339), nil
	}
	return v, nil
}

func (a *app) crApproveCmd() *cobra.Command {
	var approver string
	cmd := &cobra.Command{
		Use:   "approve ID --approver A",
		Short: "Approve a submitted change request (not by its requester)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("crs", args[0], "approve")
			if err != nil {
				return err
			}
			var out model.CR
			err = a.call(cmd.Context(), "POST", p, nil, api.ApproveRequest{Approver: approver}, &out)
			if err != nil {
				return err
			}
			return a.showCR(&out)
		},
	}
	cmd.Flags().StringVar(&approver, "approver", "", "who approves (required)")
	cmd.MarkFlagRequired("approver")
	return cmd
}

func (a *app) crListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tenant's change requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("crs")
			if err != nil {
				return err
			}
			var crs []model.CR
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &crs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(crs)
			}
			w := a.table("ID", "STATE", "DEVICE", "OBSERVED", "WINDOW", "REQUESTER", "APPROVED BY", "TITLE")
			for _, c := range crs {
				observed := 0
				for i := range c.Changes {
					if c.Changes[i].Observed() {
						observed++
					}
				}
				row(w, c.ID, string(c.State), c.Device, fmt.Sprintf("%d/%d", observed, len(c.Changes)),
					ts(c.WindowStart)+" – "+ts(c.WindowEnd), c.Requester, approvers(&c), c.Title)
			}
			return w.Flush()
		},
	}
}

func (a *app) crShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one change request with its planned changes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("crs", args[0])
			if err != nil {
				return err
			}
			var cr model.CR
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &cr); err != nil {
				return err
			}
			return a.showCR(&cr)
		},
	}
}

func (a *app) showCR(cr *model.CR) error {
	if a.json() {
		return a.printJSON(cr)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	kv := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	kv("ID", cr.ID)
	kv("TITLE", cr.Title)
	kv("STATE", string(cr.State))
	kv("DEVICE", cr.Tenant+"/"+cr.Device)
	kv("REQUESTER", cr.Requester)
	kv("APPROVED BY", approvers(cr))
	kv("WINDOW", ts(cr.WindowStart)+" – "+ts(cr.WindowEnd))
	if !cr.ImplementedAt.IsZero() {
		kv("IMPLEMENTED", ts(cr.ImplementedAt))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	t := a.table("ACTION", "CHAIN", "RULE", "OBSERVED")
	for _, c := range cr.Changes {
		obs := "-"
		if c.Observed() {
			obs = "seq " + strconv.FormatUint(c.ObservedSeq, 10) + " (" + short(c.ObservedEvent) + ")"
		}
		row(t, c.Action, c.Chain, c.Rule, obs)
	}
	return t.Flush()
}

func approvers(cr *model.CR) string {
	var names []string
	for _, ap := range cr.Approvals {
		names = append(names, ap.Approver)
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

func (a *app) deviationsCmd() *cobra.Command {
	var device, state string
	cmd := &cobra.Command{
		Use:   "deviations",
		Short: "List the tenant's deviations, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("deviations")
			if err != nil {
				return err
			}
			q := url.Values{}
			if device != "" {
				q.Set("device", device)
			}
			if state != "" {
				q.Set("state", state)
			}
			var devs []model.Deviation
			if err := a.call(cmd.Context(), "GET", p, q, nil, &devs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(devs)
			}
			w := a.table("ID", "KIND", "STATE", "DEVICE", "CHANGE", "WHERE", "POS", "WHAT", "SEQ",
				"OBSERVED")
			for _, d := range devs {
				where := d.Family + " " + d.Table
				if d.Chain != "" {
					where += " " + d.Chain
				}
				pos := "-"
				if d.Position > 0 {
					pos = strconv.Itoa(d.Position)
				}
				row(w, d.ID, string(d.Kind), string(d.State), d.Device, string(d.Change), where, pos,
					d.What(), strconv.FormatUint(d.Seq, 10), d.Observed)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "only this device")
	cmd.Flags().StringVar(&state, "state", "", "only this state: open, acknowledged, resolved")
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
			w := a.table("DEVICE", "HEAD", "LAST SEEN", "LAST HEARTBEAT", "DIGEST", "KEY", "ENROLLED")
			for _, d := range devs {
				row(w, d.Device, strconv.FormatUint(d.HeadSeq, 10), ts(d.LastSeen), ts(d.LastHeartbeat),
					short(d.Digest), short(d.KeyID), ts(d.EnrolledAt))
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
				by := "-"
				if e.Committer != nil && e.Committer.Comm != "" {
					by = fmt.Sprintf("%s[%d]", e.Committer.Comm, e.Committer.PID)
				}
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
		"only these kinds, comma-separated: baseline, change, heartbeat, reconcile")
	dev.AddCommand(hist)
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
