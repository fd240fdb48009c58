package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// ReportWriter keeps one PolicyReport per namespace with running task
// pods in line with the last audit. Per audit it makes one LIST of its
// reports, and a create, update or delete only for a report whose
// content changed.
type ReportWriter struct {
	Client dynamic.Interface
	// Name names the reports and selects them (ReportLabel): the
	// reports of a writer with another name are never touched.
	Name string
	// Limit is the most results one report holds.
	Limit int
}

// Write brings the reports in line with an audit's findings; namespaces
// are those with running task pods.
func (w *ReportWriter) Write(ctx context.Context, pods []PodFindings, namespaces []string, now time.Time) error {
	want := BuildReports(w.Name, pods, namespaces, now, w.Limit)
	res := w.Client.Resource(PolicyReports)
	selector := ManagedByLabel + "=" + ManagedBy + "," + ReportLabel + "=" + w.Name
	have, err := res.Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("listing PolicyReports: %w", err)
	}
	var errs []error
	for i := range have.Items {
		old := &have.Items[i]
		if old.GetName() != w.Name {
			continue
		}
		ns := old.GetNamespace()
		report, ok := want[ns]
		delete(want, ns)
		switch {
		case !ok:
			err = res.Namespace(ns).Delete(ctx, w.Name, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				err = nil
			}
		case sameReport(old, report):
			continue
		default:
			report.SetResourceVersion(old.GetResourceVersion())
			_, err = res.Namespace(ns).Update(ctx, report, metav1.UpdateOptions{})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("PolicyReport %s/%s: %w", ns, w.Name, err))
		}
	}
	for ns, report := range want {
		if err := w.create(ctx, report); err != nil {
			errs = append(errs, fmt.Errorf("PolicyReport %s/%s: %w", ns, w.Name, err))
		}
	}
	return errors.Join(errs...)
}

// create creates a report, or takes over one of the same name kpoguard
// wrote before reports carried ReportLabel (which the LIST does not
// select).
func (w *ReportWriter) create(ctx context.Context, report *unstructured.Unstructured) error {
	res := w.Client.Resource(PolicyReports).Namespace(report.GetNamespace())
	_, err := res.Create(ctx, report, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	old, getErr := res.Get(ctx, report.GetName(), metav1.GetOptions{})
	if getErr != nil {
		return getErr
	}
	if old.GetLabels()[ManagedByLabel] != ManagedBy {
		return err // another tool's report: left alone
	}
	report.SetResourceVersion(old.GetResourceVersion())
	_, err = res.Update(ctx, report, metav1.UpdateOptions{})
	return err
}

func equalJSON(a, b any) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}
