"""FOD's slice, Lightning side: its LightningModule, the feature cache it opts into, the branch analysis and the reader
of the authors' files (registered as a plugin). The pure torch model is :mod:`fod_lightning.models.fod`. No generic
layer imports either."""
