// Command fencectl is the operator's and auditor's command line for the Fenceline
// aggregator: enroll devices, create and approve change requests, and read deviations
// and device histories.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fenceline/fenceline/aggregator/api"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fencectl:", err)
		os.Exit(1)
	}
}

// run executes one fencectl command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// app holds the global flags and the streams.
type app struct {
	server    string
	token     string
	tokenFile string
	tenant    string
	output    string

	stdout, stderr io.Writer
	http           *http.Client
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr, http: &http.Client{Timeout: 30 * time.Second}}
	root := &cobra.Command{
		Use:           "fencectl",
		Short:         "Operate a Fenceline aggregator: enrollments, change requests, deviations",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("-o %q: want table or json", a.output)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", envOr("FENCELINE_SERVER", "http://127.0.0.1:8443"),
		"aggregator API URL (env FENCELINE_SERVER)")
	pf.StringVar(&a.token, "token", "", "admin bearer token (env FENCELINE_TOKEN)")
	pf.StringVar(&a.tokenFile, "token-file", "",
		"file holding the bearer token, e.g. <data_dir>/admin.token (env FENCELINE_TOKEN_FILE)")
	pf.StringVar(&a.tenant, "tenant", os.Getenv("FENCELINE_TENANT"), "tenant (env FENCELINE_TENANT)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")

	root.AddCommand(a.enrollCmd(), a.crCmd(), a.deviationsCmd(), a.deviationCmd(), a.deviceCmd(),
		a.statsCmd(), a.policyCmd(), a.rulesCmd())
	root.AddCommand(a.clusterCmd())
	return root
}

// bearer finds the token: --token, --token-file, FENCELINE_TOKEN, FENCELINE_TOKEN_FILE.
func (a *app) bearer() (string, error) {
	switch {
	case a.token != "":
		return a.token, nil
	case a.tokenFile != "":
		return readToken(a.tokenFile)
	case os.Getenv("FENCELINE_TOKEN") != "":
		return os.Getenv("FENCELINE_TOKEN"), nil
	case os.Getenv("FENCELINE_TOKEN_FILE") != "":
		return readToken(os.Getenv("FENCELINE_TOKEN_FILE"))
	}
	return "", errors.New("no token: use --token, --token-file or FENCELINE_TOKEN")
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// tenantPath is /v1/tenants/{tenant} followed by the escaped elements.
func (a *app) tenantPath(elems ...string) (string, error) {
	if a.tenant == "" {
		return "", errors.New("no tenant: use --tenant or FENCELINE_TENANT")
	}
	p := "/v1/tenants/" + url.PathEscape(a.tenant)
	for _, e := range elems {
		p += "/" + url.PathEscape(e)
	}
	return p, nil
}

// APIError is an error answer of the aggregator.
type APIError struct {
	Status string
	Msg    string
}

func (e *APIError) Error() string { return e.Msg + " (" + e.Status + ")" }

// call sends a request with the bearer token and decodes the JSON answer into out.
func (a *app) call(ctx context.Context, method, path string, query url.Values,
	body, out any) error {
	tok, err := a.bearer()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(a.server, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return &APIError{Status: resp.Status, Msg: e.Error}
	}
	if t := resp.Header.Get(api.UnknownTenantHeader); t != "" {
		fmt.Fprintf(a.stderr, "note: tenant %q has no devices, change requests, deviations or "+
			"policy yet; check --tenant\n", t)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

func (a *app) json() bool { return a.output == "json" }

func (a *app) statsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show the aggregator's ingest and store counters (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v any
			if err := a.call(cmd.Context(), "GET", "/v1/stats", nil, nil, &v); err != nil {
				return err
			}
			return a.printJSON(v)
		},
	}
}
