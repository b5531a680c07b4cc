"""What a finished job tells its user when its model has not learned: validation below chance, or falling."""

import math

ALTERNATIVES = 'experiment=fod_plus or model=patchcore (README: "Your own images: which model")'
BELOW_CHANCE = 0.5
FALL = 0.05  # a drop from the best validation epoch larger than seed noise on the embedded benchmark


def validation_advice(per_category: dict[str, dict], protocol: str) -> list[str]:
    """One line per category whose last validation image AUROC is below chance, or fell by more than :data:`FALL`
    from its best epoch, naming the alternatives. Under ``paper`` the validation split is the test split, and the
    line says so."""
    where = "test split (used as validation)" if protocol == "paper" else "held-out validation"
    lines = []
    for category, record in per_category.items():
        if not isinstance(record, dict) or record.get("status") == "failed":
            continue
        last = (record.get("val") or {}).get("image_auroc")
        best = (record.get("best") or {}).get("image_auroc") or {}
        if last is None or math.isnan(last):
            continue
        if last < BELOW_CHANCE:
            lines.append(f"{category}: image AUROC {last:.3f} on the {where} is below chance (0.5): the model scores "
                         f"normal images above defective ones; try {ALTERNATIVES}")  # fmt: skip
        elif best.get("value") is not None and best["value"] - last > FALL and not record.get("fitted_in_one_pass"):
            lines.append(f"{category}: image AUROC on the {where} fell from {best['value']:.3f} (epoch "
                         f"{best.get('epoch')}) to {last:.3f} (last epoch) as training went on; try {ALTERNATIVES}, or "
                         "early_stopping_patience with data.val_protocol=from_train")  # fmt: skip
    return lines
