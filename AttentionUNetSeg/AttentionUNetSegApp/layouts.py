"""The side-by-side attention gate layouts, registered with Slicer's layout node as Slicer starts."""
import slicer

from AttentionUNetSegLogic.display import registerGatesLayouts


def registerLayouts() -> None:
    """Register the gate layouts (at startupCompleted, as Slicer's own DICOM module registers its layouts: a scene
    saved in one of them stores only its id, and reopens in it only if it is registered by then)."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is not None:  # none without a main window
        registerGatesLayouts(layoutManager.layoutLogic().GetLayoutNode())
