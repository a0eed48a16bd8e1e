package e2e

import (
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestUpgradeMixedVersionsDeviations: in the middle of a rolling upgrade (two nodes of
// the earlier version, one of this one; the cluster still writes log format 1) one SNMP
// event carries a change indicator and an interface row change. Every node applies the
// same log entry, so every node should hold the same deviations.
func TestUpgradeMixedVersionsDeviations(t *testing.T) {
	oldBin, newBin := upgradeBins(t)
	l := newLab(t, "mosquitto")
	c, err := l.Cluster(3, lab.ClusterOptions{Bins: []string{oldBin, oldBin, oldBin}})
	check(t, err)
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	// Upgrade one follower in place (a fresh node of this version cannot join an earlier
	// leader: TestUpgradeNewNodeJoinsOldLeader).
	nd := c.Follower(leader)
	nd.Stop()
	c.SetBin(nd, newBin)
	check(t, c.Restart(nd))
	fleet, err := lab.NewFleet(c.Broker, lab.NetnsDialer(c.Netns))
	check(t, err)
	t.Cleanup(fleet.Close)
	d, err := fleet.Enroll(c.Poster(leader), clusterTenant, "cisco1")
	check(t, err)
	check(t, fleet.Seal(d, ""))
	indicator := ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "ccmHistory",
		Object: "indicator ccmHistoryRunningLastChanged", Before: "100", After: "150"}
	row := ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "ifTable",
		Object: "ifEntry 4", Before: "ifAdminStatus = up(1)", After: "ifAdminStatus = down(2)"}
	check(t, fleet.SealWith(d, event.SourceSNMP, []ruleset.Change{indicator, row}))
	check(t, fleet.Publish(d, 1, 2))
	check(t, fleet.WaitAcked(30*time.Second, 2*time.Second))
	checkAcked(t, c, fleet, "mixed cluster")
	counts := map[string]int{}
	for _, nd := range c.Nodes {
		var devs []clusterDeviation
		check(t, c.Get(nd, "/v1/tenants/acme/deviations", &devs))
		counts[nd.ID] = len(devs)
		t.Logf("%s (%s): %d deviations: %+v", nd.ID, nd.Args()[3], len(devs), devs)
	}
	for _, nd := range c.Nodes[1:] {
		if counts[nd.ID] != counts[c.Nodes[0].ID] {
			t.Errorf("nodes applied the same log differently: %v", counts)
			break
		}
	}
	// The upgrade completed: does it stay?
	for _, nd := range c.Nodes {
		if nd.Args()[3] != newBin+"/fenceline-aggregator" {
			nd.Stop()
			c.SetBin(nd, newBin)
			check(t, c.Restart(nd))
		}
	}
	time.Sleep(6 * time.Second)
	for _, nd := range c.Nodes {
		var devs []clusterDeviation
		check(t, c.Get(nd, "/v1/tenants/acme/deviations", &devs))
		counts[nd.ID] = len(devs)
	}
	t.Logf("after the whole upgrade: deviations per node %v; %s", counts, statusLine(c))
}

// TestUpgradeNewNodeJoinsOldLeader: a fresh node of this version joins (cluster.join) a
// cluster of the earlier version, which still writes log format 1 (adding a node, or
// replacing a lost one, in the middle of a rolling upgrade). Its join request names the
// log format it reads; the earlier version's API refuses that field, and the node asks
// again without it.
func TestUpgradeNewNodeJoinsOldLeader(t *testing.T) {
	oldBin, newBin := upgradeBins(t)
	l := newLab(t, "mosquitto")
	c, err := l.Cluster(1, lab.ClusterOptions{Bins: []string{oldBin}})
	check(t, err)
	n2, err := c.AddNode(newBin, c.Nodes[0])
	check(t, err)
	err = lab.WaitFor(20*time.Second, "node-2 a member", func() (bool, string) {
		var st upgradeStatus
		if err := c.Get(c.Nodes[0], "/v1/cluster", &st); err != nil {
			return false, err.Error()
		}
		return len(st.Members) == 2, statusLine(c)
	})
	if err != nil {
		t.Errorf("a node of this version cannot join a leader of the earlier version: %v\n%s",
			err, n2.Tail(3))
	}
}
