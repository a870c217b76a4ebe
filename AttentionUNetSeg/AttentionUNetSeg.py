"""Attention U-Net segmentation of abdominal CT with attention-map overlays (3D Slicer scripted module).

This file is the module's description and wiring. The panel, the parameter node, the sample data and
the self-test are in AttentionUNetSegApp (Qt), all processing in AttentionUNetSegLogic (no Qt) and the
engine in AttentionUNetSegLib (no Slicer). Slicer finds the widget and test classes here by name.
"""
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from AttentionUNetSegApp.layouts import registerLayouts
from AttentionUNetSegApp.parameters import AttentionUNetSegParameterNode
from AttentionUNetSegApp.sampledata import registerSampleData
from AttentionUNetSegApp.selftest import AttentionUNetSegTest
from AttentionUNetSegApp.widget import AttentionUNetSegWidget
from AttentionUNetSegLogic import AttentionUNetSegLogic

__all__ = ["AttentionUNetSeg", "AttentionUNetSegLogic", "AttentionUNetSegParameterNode", "AttentionUNetSegTest",
           "AttentionUNetSegWidget"]


class AttentionUNetSeg(ScriptedLoadableModule):
    """Module description shown in Slicer; the icon is Resources/Icons/AttentionUNetSeg.png."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Attention U-Net Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AttentionUNetSeg developers"]
        self.parent.helpText = _("""
Segments the pancreas, spleen, kidneys and liver in abdominal CT with the 3D Attention U-Net and shows
the network's attention-coefficient maps over the CT, gate by gate, so that you can see where it looked.
Choose the CT volume and a model, click Segment; the run happens in a background process and can be
cancelled. Each run adds a new segmentation; one chosen as the output is written into only after asking,
if it may hold your edits. The model shipped by default is a research model trained on six real CT scans,
two of them from 3D-IRCADb-01, so its weights are CC BY-NC-ND 4.0: for non-commercial research only, not
for clinical use (the panel shows each model's licence beside the model list). Its model card
(attention-unet-abdomen-v5.md, beside the model file) gives its training data, licences and its accuracy
on scans it did not see. macOS is not supported: Slicer's macOS builds are x86_64 programs, for which
PyTorch stops at version 2.2, older than this module needs.
""")
        self.parent.acknowledgementText = _("""
The network follows Oktay O, Schlemper J, Le Folgoc L, Lee M, Heinrich M, Misawa K, Mori K, McDonagh S,
Hammerla NY, Kainz B, Glocker B, Rueckert D. "Attention U-Net: Learning Where to Look for the Pancreas".
Medical Imaging with Deep Learning (MIDL) 2018, arXiv:1804.03999, and the authors' released code
(ozan-oktay/Attention-Gated-Networks). The sample CT comes from TotalSegmentator (Wasserthal et al., Apache-2.0).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", registerLayouts)
