package audit

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// listPage is the pods one LIST returns at most: a cluster's task pods
// come in a few pages, each bounded for the API server.
const listPage = 500

// ListPods lists the unfinished pods the selector selects in namespace
// ("" for all), as `kpoguard audit` reviews them: one paged LIST,
// filtered by the API server.
func ListPods(ctx context.Context, client kubernetes.Interface, namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	opts := metav1.ListOptions{LabelSelector: selector.String(), FieldSelector: unfinished, Limit: listPage}
	for {
		list, err := client.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			out = append(out, &list.Items[i])
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// NamespaceLabels reads namespaces' labels with a GET each, once per
// namespace, for a policy whose overrides select namespaces by label.
type NamespaceLabels struct {
	Client kubernetes.Interface
	mu     sync.Mutex
	seen   map[string]map[string]string
}

func (n *NamespaceLabels) Labels(ctx context.Context, name string) (map[string]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.seen[name]; ok {
		return l, nil
	}
	ns, err := n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if n.seen == nil {
		n.seen = map[string]map[string]string{}
	}
	n.seen[name] = ns.Labels
	return ns.Labels, nil
}
