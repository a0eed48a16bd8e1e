package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/store"
)

func (a *app) clusterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Aggregator cluster membership: status, join, remove, snapshot",
		Long: "Membership changes go to any node (a follower forwards them to the leader).\n" +
			"A new node starts with cluster.bootstrap false (or --join URL, which does the\n" +
			"join itself); a removed node is not told: stop it.",
	}
	c.AddCommand(a.clusterStatusCmd(), a.clusterJoinCmd(), a.clusterRemoveCmd(),
		a.clusterSnapshotCmd())
	return c
}

func (a *app) clusterStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the members, the leader, and this node's raft progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st store.ClusterStatus
			if err := a.call(cmd.Context(), "GET", "/v1/cluster", nil, nil, &st); err != nil {
				return err
			}
			return a.printCluster(st)
		},
	}
}

func (a *app) clusterJoinCmd() *cobra.Command {
	var req api.JoinRequest
	cmd := &cobra.Command{
		Use:   "join --id ID --raft-addr IP:PORT --api URL",
		Short: "Add a node (started with cluster.bootstrap false) as a voter",
		Example: "  fencectl cluster join --id aggregator-2 --raft-addr 127.0.0.12:7000 \\\n" +
			"    --api http://127.0.0.12:8443",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st store.ClusterStatus
			if err := a.call(cmd.Context(), "POST", "/v1/cluster/join", nil, req, &st); err != nil {
				return err
			}
			return a.printCluster(st)
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "the node's raft.node_id (required)")
	cmd.Flags().StringVar(&req.RaftAddr, "raft-addr", "", "the node's raft.listen (required)")
	cmd.Flags().StringVar(&req.APIURL, "api", "", "the node's API URL (cluster.advertise_api)")
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("raft-addr")
	return cmd
}

func (a *app) clusterRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the cluster (then stop it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st store.ClusterStatus
			err := a.call(cmd.Context(), "POST", "/v1/cluster/remove", nil,
				api.RemoveRequest{ID: args[0]}, &st)
			if err != nil {
				return err
			}
			return a.printCluster(st)
		},
	}
}

func (a *app) clusterSnapshotCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "snapshot",
		Short: "Take a raft snapshot on the node --server names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.SnapshotResponse
			if err := a.call(cmd.Context(), "POST", "/v1/cluster/snapshot", nil, nil,
				&res); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			_, err := fmt.Fprintf(a.stdout, "node %s: snapshot at applied index %d, %d bytes\n",
				res.NodeID, res.AppliedIndex, res.LastBytes)
			return err
		},
	}
}

func (a *app) printCluster(st store.ClusterStatus) error {
	if a.json() {
		return a.printJSON(st)
	}
	leader := st.Leader.ID
	switch {
	case leader == "":
		leader = "none known"
	case st.Leader.Stale:
		leader = "none reachable (last: " + leader + ")"
	}
	fmt.Fprintf(a.stdout, "node %s: %s, term %d, commit %d, applied %d; leader: %s\n",
		st.NodeID, st.State, st.Term, st.CommitIndex, st.AppliedIndex, leader)
	fmt.Fprintf(a.stdout, "raft log format: the cluster writes %d, this node reads up to %d\n\n",
		max(st.ClusterLogFormat, 1), max(st.LogFormat, 1))
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tAPI\tSUFFRAGE\tLEADER")
	for _, m := range st.Members {
		lead := ""
		if m.Leader {
			lead = "*"
		}
		api := m.APIURL
		if api == "" {
			api = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, api, m.Suffrage, lead)
	}
	return tw.Flush()
}
