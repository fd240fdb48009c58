package policy

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	docs := []string{
		"apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  rules:\n    nodePool:\n      queues:\n        gpu:\n          nodeselector: {a: b}\n",
		"apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  overrides:\n  - namespaces: [a]\n    rules:\n      maxResource: {}\n  scope:\n    exemptUser: [x]\n",
		"apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  rules:\n    nodePool:\n      queues:\n        gpu:\n          tolerations: [{key: a, operator: Exists, efect: NoSchedule}]\n",
		"apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  rules:\n    defaultResources:\n      requests: {cpu: 0.5, memory: 1073741824}\n      limits: {cpu: 1e3, memory: 1.5e9}\n",
	}
	for _, d := range docs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Println("PANIC", r)
				}
			}()
			p, err := Load([]byte(d))
			fmt.Printf("%v %T %v\n", p != nil, err, err)
			if le, ok := err.(*LoadError); ok {
				for _, e := range le.Errs {
					fmt.Printf("  field=%q type=%s detail=%q\n", e.Field, e.Type, e.Detail)
				}
			}
			if p != nil {
				rs, _ := p.RulesFor(Namespace{Name: "x"})
				fmt.Printf("%v\n", rs.DefaultResources.Default)
			}
		}()
	}
}
