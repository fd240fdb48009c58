package sandbox

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels of the simulated nodes, the well-known ones a cloud provider sets
// and the one examples/policy.yaml selects node pools by.
const (
	NodePoolLabel     = "kpoguard.io/node-pool"
	ArchLabel         = "kubernetes.io/arch"
	InstanceTypeLabel = "node.kubernetes.io/instance-type"
	ZoneLabel         = "topology.kubernetes.io/zone"
	// SimulatedNodeAnnotation marks the nodes kwok plays the kubelet for
	// (kwok's own convention); nodes without it, such as those the tests
	// create for pods they bind themselves, are left alone.
	SimulatedNodeAnnotation = "kwok.x-k8s.io/node"
)

// A NodePool is a group of simulated nodes labelled and tainted like a
// cloud provider's node pool.
type NodePool struct {
	// Name is the pool's kpoguard.io/node-pool label, and its nodes' prefix.
	Name string
	// InstanceTypes are used in turn, one node each, as the zones are.
	InstanceTypes []InstanceType
	Zones         []string
	Arch          string
	Taints        []corev1.Taint
	Nodes         int
}

// An InstanceType is a cloud machine type and what a node of it offers.
type InstanceType struct {
	Name string
	// CPU, Memory and EphemeralStorage are the node's allocatable: the
	// scheduler fits pods against these.
	CPU, Memory, EphemeralStorage string
}

// NodePools are the sandbox's pools: examples/policy.yaml's two queues'
// (default, and nvme with its instance types and NoSchedule taint), and an
// arm64 pool that only pods tolerating its taint reach, as on clusters
// that run both architectures.
var NodePools = []NodePool{
	{
		Name:          "default",
		InstanceTypes: []InstanceType{{Name: "m5.4xlarge", CPU: "16", Memory: "62Gi", EphemeralStorage: "100Gi"}},
		Zones:         []string{"us-east-1a", "us-east-1b", "us-east-1c"},
		Arch:          "amd64",
		Nodes:         3,
	},
	{
		Name: "nvme",
		InstanceTypes: []InstanceType{
			{Name: "m5d.4xlarge", CPU: "16", Memory: "62Gi", EphemeralStorage: "558Gi"},
			{Name: "m6id.4xlarge", CPU: "16", Memory: "62Gi", EphemeralStorage: "884Gi"},
		},
		Zones:  []string{"us-east-1a", "us-east-1b"},
		Arch:   "amd64",
		Taints: []corev1.Taint{{Key: NodePoolLabel, Value: "nvme", Effect: corev1.TaintEffectNoSchedule}},
		Nodes:  2,
	},
	{
		Name:          "arm64",
		InstanceTypes: []InstanceType{{Name: "m7g.4xlarge", CPU: "16", Memory: "62Gi", EphemeralStorage: "100Gi"}},
		Zones:         []string{"us-east-1a", "us-east-1b"},
		Arch:          "arm64",
		Taints:        []corev1.Taint{{Key: ArchLabel, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}},
		Nodes:         2,
	},
}

// maxPodsPerNode is the kubelet's default.
const maxPodsPerNode = "110"

// NodeObjects returns the pool's nodes as the sandbox creates them: the
// status a kubelet registers with (capacity and allocatable), and the
// annotation that hands them to kwok, which reports them ready.
func (p NodePool) NodeObjects() []*corev1.Node {
	nodes := make([]*corev1.Node, p.Nodes)
	for i := range nodes {
		it, zone := p.InstanceTypes[i%len(p.InstanceTypes)], p.Zones[i%len(p.Zones)]
		name := fmt.Sprintf("pool-%s-%d", p.Name, i)
		resources := corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse(it.CPU),
			corev1.ResourceMemory:           resource.MustParse(it.Memory),
			corev1.ResourceEphemeralStorage: resource.MustParse(it.EphemeralStorage),
			corev1.ResourcePods:             resource.MustParse(maxPodsPerNode),
		}
		nodes[i] = &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{SimulatedNodeAnnotation: "fake"},
				Labels: map[string]string{
					NodePoolLabel:                   p.Name,
					ArchLabel:                       p.Arch,
					"kubernetes.io/os":              "linux",
					"kubernetes.io/hostname":        name,
					InstanceTypeLabel:               it.Name,
					ZoneLabel:                       zone,
					"topology.kubernetes.io/region": "us-east-1",
				},
			},
			Spec:   corev1.NodeSpec{Taints: p.Taints},
			Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
		}
	}
	return nodes
}

// createNodePools creates every pool's nodes and waits until kwok reports
// them ready and the scheduler may use them.
func (c *Cluster) createNodePools(ctx context.Context) error {
	var names []string
	for _, pool := range NodePools {
		for _, node := range pool.NodeObjects() {
			if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating node %s: %w", node.Name, err)
			}
			names = append(names, node.Name)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range names {
		for {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err == nil && schedulable(node) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s not ready within 30s (%v); kwok's log: %s", name, err, c.scheduling.kwok.logPath)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// deleteNodePools deletes the pools' nodes.
func (c *Cluster) deleteNodePools(ctx context.Context) {
	for _, pool := range NodePools {
		for _, node := range pool.NodeObjects() {
			_ = c.Client.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{})
		}
	}
}

// schedulable: the node reports ready, and the node lifecycle controller
// has seen it and lifted the not-ready taint the API server gave it.
func schedulable(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady {
			return false
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
