// Command fenceline-agent watches a firewall's nftables ruleset and reports every change
// to the Fenceline aggregator as a signed event.
//
//	fenceline-agent run       [--config FILE] [--netns NAME] …   watch and report (default)
//	fenceline-agent enroll    --aggregator URL --token TOKEN       register this agent's key
//	fenceline-agent dump      [--netns NAME] [-o text|json]        print the canonical ruleset
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fenceline/fenceline/agent"
	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/nft"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fenceline-agent:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "fenceline-agent",
		Short:         "Watch a firewall's nftables ruleset and report every change, signed",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Watch the ruleset and report changes (the default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd)
		},
	}
	agent.AddFlags(runCmd.Flags())
	root.AddCommand(runCmd, newEnroll(), newDump())
	// Without a subcommand the agent runs.
	agent.AddFlags(root.Flags())
	root.RunE = runCmd.RunE
	return root
}

func newLogger(level, format string) *slog.Logger {
	l, err := agent.ParseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func run(cmd *cobra.Command) error {
	cfg, err := agent.Load(cmd.Flags())
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log.Level, cfg.Log.Format)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The namespace first: a mistyped name must not use up a one-time enrollment token.
	reader, err := nft.Open(cfg.Nftables.Netns)
	if err != nil {
		return err
	}
	defer reader.Close()
	id, err := agent.Enrolled(ctx, cfg, log)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, id, reader, log)
	if err != nil {
		return err
	}
	defer a.Close()
	snmpDevices, err := agent.OpenSNMP(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer snmpDevices.Close()
	log.Info("agent started", "tenant", id.Tenant, "device", id.Device,
		"netns", cfg.Nftables.Netns, "state_dir", cfg.StateDir)
	err = agent.RunWithSNMP(ctx, a, snmpDevices)
	log.Info("agent stopped")
	return err
}

func newEnroll() *cobra.Command {
	var server, token, dir string
	c := &cobra.Command{
		Use:   "enroll",
		Short: "Register a new key with the aggregator using a one-time token from `fencectl enroll`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				return errors.New("--token is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			id, err := identity.Enroll(ctx, &http.Client{Timeout: 30 * time.Second}, server, token, dir)
			if err != nil {
				return err
			}
			fmt.Printf("enrolled %s/%s with key %s (state in %s)\n", id.Tenant, id.Device, id.KeyID, dir)
			return nil
		},
	}
	c.Flags().StringVar(&server, "aggregator", "http://127.0.0.1:8443", "aggregator API URL")
	c.Flags().StringVar(&token, "token", os.Getenv("FENCELINE_ENROLL_TOKEN"), "one-time enrollment token")
	c.Flags().StringVar(&dir, "state-dir", "/var/lib/fenceline-agent", "directory for key and enrollment")
	return c
}

func newDump() *cobra.Command {
	var netns, output string
	c := &cobra.Command{
		Use:   "dump",
		Short: "Print the canonical ruleset and its digest, read through netlink",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := nft.Open(netns)
			if err != nil {
				return err
			}
			defer r.Close()
			rs, gen, err := r.Snapshot()
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Digest     string `json:"digest"`
					Generation uint32 `json:"generation"`
					Rules      int    `json:"rules"`
					Ruleset    any    `json:"ruleset"`
				}{rs.Digest().String(), gen, rs.RuleCount(), rs})
			case "text":
				fmt.Print(rs.Text())
				fmt.Printf("# digest %s generation %d rules %d\n", rs.Digest(), gen, rs.RuleCount())
				return nil
			default:
				return fmt.Errorf("-o %q: want text or json", output)
			}
		},
	}
	c.Flags().StringVar(&netns, "netns", "", "network namespace name (default: the current one)")
	c.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return c
}
