package main

import (
	"bytes"
	"encoding/json"
	"errors"
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

// changesFlag collects planned changes (--add, --delete, --add-element, --delete-element,
// --policy) in the order given.
type changesFlag struct {
	action  string
	changes *[]model.PlannedChange
}

func (f *changesFlag) String() string { return "" }
func (f *changesFlag) Type() string   { return "WHERE|WHAT" }

// Set parses "family table chain|rule" ("family table chain#N|rule" adds at position N),
// "family table set|element" or "family table chain|accept". The place never holds '|';
// the rest may.
func (f *changesFlag) Set(v string) error {
	where, what, ok := strings.Cut(v, "|")
	where, what = strings.TrimSpace(where), strings.TrimSpace(what)
	if !ok || where == "" || what == "" {
		switch f.action {
		case model.ActionAddElement, model.ActionDeleteElement:
			return fmt.Errorf("want 'family table set|element', e.g. 'inet filter blocklist|192.0.2.7'")
		case model.ActionPolicy:
			return fmt.Errorf("want 'family table chain|accept or drop'")
		}
		return fmt.Errorf("want 'family table chain|rule', e.g. 'inet filter input|tcp dport 22 accept'" +
			" (chain#N|rule adds at position N)")
	}
	p := model.PlannedChange{Action: f.action}
	switch f.action {
	case model.ActionAddElement, model.ActionDeleteElement:
		p.Set, p.Element = where, what
	case model.ActionPolicy:
		p.Chain, p.Policy = where, what
	default:
		if c, n, ok := strings.Cut(where, "#"); ok {
			pos, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil || pos < 1 {
				return fmt.Errorf("position %q: want a number from 1", n)
			}
			where, p.Position = strings.TrimSpace(c), pos
		}
		p.Chain, p.Rule = where, what
	}
	*f.changes = append(*f.changes, p)
	return nil
}

var _ pflag.Value = (*changesFlag)(nil)

func (a *app) crCmd() *cobra.Command {
	cr := &cobra.Command{Use: "cr", Short: "Change requests: create, move through their life, list, show"}
	cr.AddCommand(a.crCreateCmd(), a.crListCmd(), a.crShowCmd())
	for _, act := range []struct{ name, short string }{
		{"submit", "Submit a draft (a standard CR under its template is approved at once)"},
		{"approve", "Approve a submitted CR (never by its requester; the policy says how many and which roles)"},
		{"reject", "Reject a submitted CR (--why is required)"},
		{"cancel", "Cancel a draft, submitted or approved CR"},
		{"review", "Record the post-implementation review of an emergency CR"},
		{"close", "Close a verified or failed CR"},
	} {
		cr.AddCommand(a.crActionCmd(act.name, act.short))
	}
	return cr
}

func (a *app) crCreateCmd() *cobra.Command {
	var req api.CRRequest
	var file string
	var changes []model.PlannedChange
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a change request (submitted, or a draft with --draft)",
		Long: "Create a change request from flags, or from a JSON file with the API's fields\n" +
			"(id, title, justification, requester, type, template, device, devices, tags,\n" +
			"window_start, window_end, time_zone, changes, rollback); flags given with --file\n" +
			"override its fields and add to its changes.\n\n" +
			"Windows are RFC 3339 times, local times like 2026-03-29T01:30 in --time-zone (default:\n" +
			"the tenant's), \"now\", or an offset from now such as +2h. Planned rules are nft syntax\n" +
			"and are parsed into the canonical form the agent reports; an error shows the position.",
		Example: "  fencectl cr create --device fw1 --title 'Open HTTPS' --requester alice \\\n" +
			"    --window-start now --window-end +2h --add 'inet filter input|tcp dport 443 accept'\n" +
			"  fencectl cr create --tag edge --type standard --template blocklist --requester alice \\\n" +
			"    --title 'Block 192.0.2.7' --window-start now --window-end +1h \\\n" +
			"    --add-element 'inet filter blocklist|192.0.2.7'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := api.CRRequest{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if err := decodeStrict(b, &body); err != nil {
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
			var out api.CRCreated
			if err := a.call(cmd.Context(), "POST", p, nil, body, &out); err != nil {
				return err
			}
			return a.showCRWithWarnings(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.ID, "id", "", "CR id or external ticket id (default: numbered CR-000001 …)")
	f.StringVar(&req.Title, "title", "", "title")
	f.StringVar(&req.Justification, "justification", "", "why the change is needed")
	f.StringVar(&req.Requester, "requester", "", "who requests the change")
	f.StringVar(&req.Type, "type", "", "standard, normal (default) or emergency")
	f.StringVar(&req.Template, "template", "", "the policy's standard-change template (type standard)")
	f.StringVar(&req.Device, "device", "", "target device")
	f.StringSliceVar(&req.Devices, "devices", nil, "more target devices (comma-separated, repeatable)")
	f.StringSliceVar(&req.Tags, "tag", nil, "target every device carrying these tags (repeatable)")
	f.StringVar(&req.WindowStart, "window-start", "", "window start")
	f.StringVar(&req.WindowEnd, "window-end", "", "window end")
	f.StringVar(&req.TimeZone, "time-zone", "", "IANA zone of local window times (default: the tenant's)")
	f.StringVar(&req.Rollback, "rollback", "", "rollback plan")
	f.BoolVar(&req.Draft, "draft", false, "create as a draft (submit it later)")
	f.Var(&changesFlag{action: model.ActionAdd, changes: &changes}, "add",
		"planned rule addition 'family table chain|rule', or 'chain#N|rule' at position N (repeatable)")
	f.Var(&changesFlag{action: model.ActionDelete, changes: &changes}, "delete",
		"planned rule deletion 'family table chain|rule' (repeatable)")
	f.Var(&changesFlag{action: model.ActionAddElement, changes: &changes}, "add-element",
		"planned set element addition 'family table set|element' (repeatable)")
	f.Var(&changesFlag{action: model.ActionDeleteElement, changes: &changes}, "delete-element",
		"planned set element removal 'family table set|element' (repeatable)")
	f.Var(&changesFlag{action: model.ActionPolicy, changes: &changes}, "policy",
		"planned chain policy 'family table chain|accept or drop' (repeatable)")
	f.Var(&configFlag{changes: &changes}, "config",
		"planned configuration change of a device watched over SNMP: an object as events name "+
			"it ('ifEntry 2', 'scalar sysContact'), or 'any' (repeatable)")
	f.StringVar(&file, "file", "", "read the CR from a JSON file")
	return cmd
}

// configFlag collects planned configuration changes (--config OBJECT, or any).
type configFlag struct{ changes *[]model.PlannedChange }

func (f *configFlag) String() string { return "" }
func (f *configFlag) Type() string   { return "OBJECT" }

func (f *configFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return fmt.Errorf("want an object name such as 'ifEntry 2', or 'any'")
	}
	p := model.PlannedChange{Action: model.ActionConfig}
	if v != "any" {
		p.Object = v
	}
	*f.changes = append(*f.changes, p)
	return nil
}

func mergeCR(dst, flags *api.CRRequest, changes []model.PlannedChange) {
	set := func(d *string, v string) {
		if v != "" {
			*d = v
		}
	}
	set(&dst.ID, flags.ID)
	set(&dst.Title, flags.Title)
	set(&dst.Justification, flags.Justification)
	set(&dst.Requester, flags.Requester)
	set(&dst.Type, flags.Type)
	set(&dst.Template, flags.Template)
	set(&dst.Device, flags.Device)
	set(&dst.WindowStart, flags.WindowStart)
	set(&dst.WindowEnd, flags.WindowEnd)
	set(&dst.TimeZone, flags.TimeZone)
	set(&dst.Rollback, flags.Rollback)
	dst.Devices = append(dst.Devices, flags.Devices...)
	dst.Tags = append(dst.Tags, flags.Tags...)
	dst.Draft = dst.Draft || flags.Draft
	dst.Changes = append(dst.Changes, changes...)
}

// windowTime turns "now" and "+2h"-style offsets into RFC 3339; other values pass as
// given for the server to read (RFC 3339 or a local time in the window's zone).
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

// showCRWithWarnings prints a CR as showCR does, its plan's warnings on stderr, and in
// JSON the CR with its warnings.
func (a *app) showCRWithWarnings(out api.CRCreated) error {
	for _, w := range out.Warnings {
		fmt.Fprintln(a.stderr, "warning:", w)
	}
	if a.json() {
		return a.printJSON(out)
	}
	return a.showCR(out.CR)
}

func (a *app) crActionCmd(action, short string) *cobra.Command {
	var req api.CRActionRequest
	cmd := &cobra.Command{
		Use:   action + " ID --by NAME [--why TEXT]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("crs", args[0], action)
			if err != nil {
				return err
			}
			if req.By == "" {
				req.By = req.Approver
			}
			req.Approver = ""
			var out api.CRCreated
			if err := a.call(cmd.Context(), "POST", p, nil, req, &out); err != nil {
				return err
			}
			return a.showCRWithWarnings(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.By, "by", "", "who does it (required)")
	f.StringVar(&req.Why, "why", "", "why (recorded in the CR's history)")
	if action == "approve" {
		f.StringVar(&req.Approver, "approver", "", "who approves (same as --by)")
		f.StringVar(&req.Role, "role", "", "the role approved in (default: the first the policy allows)")
	}
	return cmd
}

func (a *app) crListCmd() *cobra.Command {
	var state, device string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenant's change requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("crs")
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if device != "" {
				q.Set("device", device)
			}
			var crs []model.CR
			if err := a.call(cmd.Context(), "GET", p, q, nil, &crs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(crs)
			}
			w := a.table("ID", "TYPE", "STATE", "DEVICES", "OBSERVED", "WINDOW", "REQUESTER",
				"APPROVED BY", "TITLE")
			for _, c := range crs {
				row(w, c.ID, string(c.Type), string(c.State), strings.Join(c.Devices, ","), observed(&c),
					window(&c), c.Requester, approvers(&c), c.Title)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only this state")
	cmd.Flags().StringVar(&device, "device", "", "only CRs targeting this device")
	return cmd
}

// observed counts planned changes landed on every target device.
func observed(c *model.CR) string {
	n, total := 0, len(c.Changes)*max(len(c.Devices), 1)
	for i := range c.Changes {
		for _, o := range c.Changes[i].Observations {
			if o.Outcome == model.Landed {
				n++
			}
		}
	}
	return fmt.Sprintf("%d/%d", n, total)
}

// window shows the window in the CR's time zone.
func window(c *model.CR) string {
	loc := time.UTC
	if l, err := time.LoadLocation(c.TimeZone); err == nil && c.TimeZone != "" {
		loc = l
	}
	const layout = "2006-01-02 15:04 MST"
	return c.WindowStart.In(loc).Format(layout) + " – " + c.WindowEnd.In(loc).Format(layout)
}

func (a *app) crShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one change request: planned changes, what was observed, history, verification",
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
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s\t%s\n", k, v)
		}
	}
	kv("ID", cr.ID)
	kv("TITLE", cr.Title)
	kv("TYPE", string(cr.Type)+map[bool]string{true: " (template " + cr.Template + ")"}[cr.Template != ""])
	kv("STATE", string(cr.State))
	kv("DEVICES", strings.Join(cr.Devices, ","))
	if len(cr.Targets.Tags) > 0 {
		kv("TAGS", strings.Join(cr.Targets.Tags, ","))
	}
	kv("REQUESTER", cr.Requester)
	kv("JUSTIFICATION", cr.Justification)
	kv("APPROVED BY", approvers(cr))
	kv("WINDOW", window(cr)+" ("+cr.TimeZone+")")
	kv("ROLLBACK", cr.Rollback)
	if !cr.ImplementedAt.IsZero() {
		kv("IMPLEMENTED", ts(cr.ImplementedAt))
	}
	if !cr.ReviewDue.IsZero() {
		rv := "due " + ts(cr.ReviewDue)
		if cr.Review != nil {
			rv = "by " + cr.Review.By + " at " + ts(cr.Review.At) + ": " + cr.Review.Note
		}
		kv("REVIEW", rv)
	}
	if v := cr.Verification; v != nil {
		kv("VERIFICATION", v.Outcome+" at "+ts(v.At)+map[bool]string{true: " (" + v.Deviation + ")"}[v.Deviation != ""])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	t := a.table("#", "ACTION", "WHERE", "PLANNED (CANONICAL)", "OBSERVED")
	for i, c := range cr.Changes {
		var obs []string
		for _, o := range c.Observations {
			s := o.Device + ": " + o.Outcome + " seq " + strconv.FormatUint(o.Seq, 10)
			if o.Actual != "" {
				s += " as " + o.Actual
			}
			if o.Deviation != "" {
				s += " (" + o.Deviation + ")"
			}
			obs = append(obs, s)
		}
		where := c.Where()
		if c.Position > 0 {
			where += " #" + strconv.Itoa(c.Position)
		}
		row(t, strconv.Itoa(i+1), c.Action, where, c.Text(), strings.Join(obs, "; "))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	h := a.table("AT", "FROM", "TO", "BY", "WHY")
	for _, tr := range cr.History {
		row(h, ts(tr.At), string(tr.From), string(tr.To), tr.By, tr.Why)
	}
	return h.Flush()
}

func approvers(cr *model.CR) string {
	var names []string
	for _, ap := range cr.Approvals {
		n := ap.Approver
		if ap.Role != "" {
			n += " (" + ap.Role + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (a *app) deviationsCmd() *cobra.Command {
	var device, state, kind, cr string
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
			for k, v := range map[string]string{"device": device, "state": state, "kind": kind, "cr": cr} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var devs []model.Deviation
			if err := a.call(cmd.Context(), "GET", p, q, nil, &devs); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(devs)
			}
			w := a.table("ID", "KIND", "STATE", "DEVICE", "CHANGE", "WHERE", "POS", "WHAT", "CR", "SEQ",
				"OBSERVED")
			for _, d := range devs {
				where := strings.TrimSpace(d.Family + " " + d.Table)
				if d.Chain != "" {
					where += " " + d.Chain
				}
				pos := "-"
				if d.Position > 0 {
					pos = strconv.Itoa(d.Position)
				}
				seq := "-"
				if d.Seq > 0 {
					seq = strconv.FormatUint(d.Seq, 10)
				}
				row(w, d.ID, string(d.Kind), string(d.State), d.Device, string(d.Change), where, pos,
					d.What(), d.CR, seq, d.Observed)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&device, "device", "", "only this device")
	f.StringVar(&state, "state", "", "only this state: open, acknowledged, resolved")
	f.StringVar(&kind, "kind", "", "only this kind (unauthorized, unapproved, out_of_window, "+
		"differs_from_spec, incomplete, emergency_review_due, agent_silent, gap, broken_chain, "+
		"bad_signature, folded)")
	f.StringVar(&cr, "cr", "", "only deviations about this CR")
	return cmd
}

func (a *app) deviationCmd() *cobra.Command {
	dev := &cobra.Command{Use: "deviation", Short: "One deviation: show, acknowledge, resolve"}
	dev.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show a deviation with planned against actual and its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("deviations", args[0])
			if err != nil {
				return err
			}
			var d model.Deviation
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &d); err != nil {
				return err
			}
			return a.showDeviation(&d)
		},
	})
	for _, act := range []string{"acknowledge", "resolve"} {
		var req api.DeviationActionRequest
		c := &cobra.Command{
			Use:     act + " ID --by NAME --why TEXT",
			Short:   map[string]string{"acknowledge": "Acknowledge an open deviation", "resolve": "Resolve a deviation: retroactive_cr (with --cr), rollback_observed or accepted_risk"}[act],
			Aliases: map[string][]string{"acknowledge": {"ack"}}[act],
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				p, err := a.tenantPath("deviations", args[0], act)
				if err != nil {
					return err
				}
				var d model.Deviation
				if err := a.call(cmd.Context(), "POST", p, nil, req, &d); err != nil {
					return err
				}
				return a.showDeviation(&d)
			},
		}
		c.Flags().StringVar(&req.By, "by", "", "who (required)")
		c.Flags().StringVar(&req.Why, "why", "", "why")
		if act == "resolve" {
			c.Flags().StringVar(&req.Resolution, "resolution", "", "retroactive_cr, rollback_observed or accepted_risk")
			c.Flags().StringVar(&req.CR, "cr", "", "the retroactive CR (resolution retroactive_cr)")
		}
		dev.AddCommand(c)
	}
	return dev
}

func (a *app) showDeviation(d *model.Deviation) error {
	if a.json() {
		return a.printJSON(d)
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s\t%s\n", k, v)
		}
	}
	kv("ID", d.ID)
	kv("KIND", string(d.Kind))
	kv("STATE", string(d.State)+map[bool]string{true: " (" + d.Resolution + ")"}[d.Resolution != ""])
	kv("DEVICE", d.Device)
	kv("CHANGE", string(d.Change))
	kv("WHAT", d.What())
	kv("BEFORE", d.Before)
	kv("AFTER", d.After)
	kv("CR", d.CR)
	kv("PLANNED", d.Planned)
	kv("DETAIL", d.Detail)
	if d.Seq > 0 {
		ev := strconv.FormatUint(d.Seq, 10)
		if d.EventID != "" {
			ev += " " + short(d.EventID)
		}
		if d.Observed != "" {
			ev += " observed " + d.Observed
		}
		kv("EVENT", ev)
	}
	kv("RAISED", ts(d.Raised))
	if d.Count > 1 {
		kv("SEEN", strconv.FormatUint(d.Count, 10)+" times, last "+ts(d.LastSeen))
	}
	kv("RESOLVED BY", d.ResolvedBy)
	if err := w.Flush(); err != nil {
		return err
	}
	if len(d.Fields) > 0 {
		fmt.Fprintln(a.stdout)
		t := a.table("FIELD", "PLANNED", "ACTUAL")
		for _, f := range d.Fields {
			row(t, f.Field, f.Planned, f.Actual)
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	if len(d.History) > 0 {
		fmt.Fprintln(a.stdout)
		h := a.table("AT", "FROM", "TO", "BY", "WHY", "RESOLUTION")
		for _, tr := range d.History {
			row(h, ts(tr.At), string(tr.From), string(tr.To), tr.By, tr.Why, tr.Resolution)
		}
		return h.Flush()
	}
	return nil
}

func (a *app) policyCmd() *cobra.Command {
	pol := &cobra.Command{Use: "policy", Short: "The tenant's change-management policy"}
	pol.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Show the policy (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("policy")
			if err != nil {
				return err
			}
			var v model.Policy
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &v); err != nil {
				return err
			}
			return a.printJSON(v)
		},
	})
	var file, by string
	set := &cobra.Command{
		Use:   "set --file POLICY.json",
		Short: "Replace the policy from a JSON file",
		Long: "The file has the fields `fencectl policy show` prints: time_zone, approvals (per type:\n" +
			"count and roles), templates (standard changes: name, changes, device_tags),\n" +
			"emergency_review, silence_after, members (name and roles).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			var req api.PolicyRequest
			if err := decodeStrict(b, &req); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			req.By = by
			p, err := a.tenantPath("policy")
			if err != nil {
				return err
			}
			var v model.Policy
			if err := a.call(cmd.Context(), "PUT", p, nil, req, &v); err != nil {
				return err
			}
			return a.printJSON(v)
		},
	}
	set.Flags().StringVar(&file, "file", "", "the policy as JSON (required)")
	set.Flags().StringVar(&by, "by", "", "who sets it")
	set.MarkFlagRequired("file")
	pol.AddCommand(set)
	return pol
}

func (a *app) deviceTagCmd() *cobra.Command {
	var tags []string
	cmd := &cobra.Command{
		Use:   "tag DEVICE --tag T [--tag T…]",
		Short: "Set a device's tags (replaces them; no --tag clears them)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.tenantPath("devices", args[0], "tags")
			if err != nil {
				return err
			}
			var d model.Device
			if err := a.call(cmd.Context(), "PUT", p, nil, api.TagsRequest{Tags: tags}, &d); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(d)
			}
			_, err = fmt.Fprintf(a.stdout, "%s: %s\n", d.Device, strings.Join(d.Tags, ","))
			return err
		},
	}
	cmd.Flags().StringSliceVar(&tags, "tag", nil, "tag (repeatable, comma-separated)")
	return cmd
}

func (a *app) rulesCmd() *cobra.Command {
	var device string
	cmd := &cobra.Command{
		Use:   "rules --device NAME",
		Short: "Every rule on a device with its provenance: baseline, the CR that added it, or unauthorized",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.tenantPath("devices", device, "rules")
			if err != nil {
				return err
			}
			var rules []model.RuleProvenance
			if err := a.call(cmd.Context(), "GET", p, nil, nil, &rules); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(rules)
			}
			w := a.table("CHAIN", "POS", "SOURCE", "CR", "DEVIATION", "SEQ", "RULE")
			for _, r := range rules {
				dev := r.Deviation
				if dev != "" && r.DeviationState != "" {
					dev += " (" + string(r.DeviationState) + ")"
				}
				seq := ""
				if r.Seq > 0 {
					seq = strconv.FormatUint(r.Seq, 10)
				}
				row(w, r.Family+" "+r.Table+" "+r.Chain, strconv.Itoa(r.Position), r.Source, r.CR, dev,
					seq, r.Rule)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "device name (required)")
	cmd.MarkFlagRequired("device")
	return cmd
}

// decodeStrict decodes a JSON file given to a command, refusing fields the API does not
// know (a misspelt field would otherwise vanish without a word) and trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
