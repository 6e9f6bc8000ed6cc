/**
 * `lifeline/reconcile`: reconciliation jobs between two stores (docs/reconciliation.md).
 *
 * @module
 */
export {
  defineReconciliation,
  runReconciliation,
  scheduleReconciliation,
  registerReconciliation,
  getReconciliation,
  listReconciliations,
  listReconciliationRuns,
  getReconciliationRun,
  listReconciliationFindings,
  diffFields,
  reconcileDefaults,
} from '../effects/reconcile.js'
export type {
  Reconciliation,
  ReconciliationSpec,
  ReconcileSource,
  ReconcileTarget,
  ReconcileRepair,
  ReconcileContext,
  ReconcileBatch,
  ReconcileKind,
  ReconcileStatus,
  ReconcileRun,
  ReconcileRunResult,
  ReconcileFinding,
  ReconcileDifference,
  RunReconciliationOptions,
  ScheduleReconciliationOptions,
  ReconciliationSchedule,
} from '../effects/reconcile.js'
